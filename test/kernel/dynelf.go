package kernel

import (
	"debug/elf"
	"fmt"
	"path/filepath"
	"strings"
)

// libraryDirs are where the host keeps shared libraries (Debian amd64,
// merged /usr or not).
var libraryDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// guestLibraryDir is where the image puts every library: the first of the
// loader's built-in search directories on Debian amd64, so no ld.so.cache
// or LD_LIBRARY_PATH is needed in the guest.
const guestLibraryDir = "lib/x86_64-linux-gnu"

// dynamicClosure lists what a dynamically linked host program needs in the
// initramfs to run: its program interpreter and every library it loads,
// directly or through another library. Keys are paths in the image,
// values the host files (symlinks followed when read).
func dynamicClosure(bin string) (map[string]string, error) {
	out := map[string]string{}
	interp, err := elfInterpreter(bin)
	if err != nil {
		return nil, err
	}
	if interp == "" {
		return nil, fmt.Errorf("%s is static: copy it as it is", bin)
	}
	out[strings.TrimPrefix(interp, "/")] = interp
	queue := []string{bin}
	for len(queue) > 0 {
		f, err := elf.Open(queue[0])
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", queue[0], err)
		}
		libs, err := f.ImportedLibraries()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the libraries %s needs: %w", queue[0], err)
		}
		queue = queue[1:]
		for _, lib := range libs {
			dst := guestLibraryDir + "/" + lib
			if _, ok := out[dst]; ok || filepath.Base(interp) == lib {
				continue
			}
			src := findLibrary(lib)
			if src == "" {
				return nil, fmt.Errorf("%s needs %s, which is in none of %s", bin, lib, strings.Join(libraryDirs, " "))
			}
			out[dst] = src
			queue = append(queue, src)
		}
	}
	return out, nil
}

func elfInterpreter(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", fmt.Errorf("reading %s's interpreter: %w", path, err)
		}
		return strings.TrimRight(string(b), "\x00"), nil
	}
	return "", nil
}

func findLibrary(name string) string {
	for _, d := range libraryDirs {
		p := filepath.Join(d, name)
		if fileExists(p) {
			return p
		}
	}
	return ""
}
