package kernel

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// moduleSuffixes are the file endings Debian kernels use for modules
// (6.1 ships plain .ko; later packages compress them).
var moduleSuffixes = []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"}

func isModuleFile(p string) bool {
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(p, s) {
			return true
		}
	}
	return false
}

// moduleName turns a path or name into the kernel's canonical module name:
// no directory, no suffix, '-' folded to '_' (the kernel treats them alike).
func moduleName(p string) string {
	b := path.Base(p)
	for _, s := range moduleSuffixes {
		if t, ok := strings.CutSuffix(b, s); ok {
			b = t
			break
		}
	}
	return strings.ReplaceAll(b, "-", "_")
}

// moduleDeps maps a module name to the names it depends on.
type moduleDeps map[string][]string

// moduleDepends reads the "depends=a,b" entry of a module's .modinfo
// section (the data depmod itself works from).
func moduleDepends(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, fmt.Errorf("opening module %s: %w", ko, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", ko)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo of %s: %w", ko, err)
	}
	return parseModinfoDepends(data), nil
}

// parseModinfoDepends finds "depends=" among the NUL-separated key=value
// strings of a .modinfo section.
func parseModinfoDepends(modinfo []byte) []string {
	for _, kv := range bytes.Split(modinfo, []byte{0}) {
		v, ok := bytes.CutPrefix(kv, []byte("depends="))
		if !ok {
			continue
		}
		var deps []string
		for _, d := range strings.Split(string(v), ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, moduleName(d))
			}
		}
		return deps
	}
	return nil
}

// loadOrder lists roots and everything they need, each dependency before
// the modules that use it, each module once.
func (d moduleDeps) loadOrder(roots []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, chain []string) error
	visit = func(n string, chain []string) error {
		switch state[n] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, n), " → "))
		}
		ds, ok := d[n]
		if !ok {
			return fmt.Errorf("module %s: dependencies unknown", n)
		}
		state[n] = 1
		for _, dep := range ds {
			if err := visit(dep, append(chain, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	for _, r := range roots {
		if err := visit(moduleName(r), nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// decompressModule writes an uncompressed copy of a module into dir, since
// busybox insmod loads only plain ELF objects. xz and zstd go through the
// host tools (Go's standard library has neither); gzip stays in Go.
func decompressModule(ctx context.Context, src, dir string) (string, error) {
	dst := filepath.Join(dir, moduleName(src)+".ko")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var data []byte
	var err error
	switch {
	case strings.HasSuffix(src, ".ko.xz"):
		data, err = runCommand(ctx, "", "xz", "-dc", src)
	case strings.HasSuffix(src, ".ko.zst"):
		data, err = runCommand(ctx, "", "zstd", "-dcq", src)
	case strings.HasSuffix(src, ".ko.gz"):
		data, err = gunzipFile(src)
	default:
		data, err = os.ReadFile(src)
	}
	if err != nil {
		return "", fmt.Errorf("decompressing %s: %w", src, err)
	}
	if !bytes.HasPrefix(data, []byte("\x7fELF")) {
		return "", fmt.Errorf("decompressing %s: result is not an ELF object", src)
	}
	if src == dst {
		return dst, nil
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	return dst, nil
}

func gunzipFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}
