package kernel

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// DiskModules are what a guest needs to mount an ext4 image attached as a
// virtio disk. Debian builds them as modules (virtio_pci is built in on
// 6.12, a module on 6.1): the roots are resolved against the package's
// modules.builtin and each module's own dependencies. ext4 asks the crypto
// API for crc32c at every mount, which nothing loads for it in a guest
// without modprobe (crc32c-intel needs SSE4.2, which qemu64 lacks).
var DiskModules = []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4"}

// diskModules is the cached extraction, keyed by the roots it was made for.
type diskModules struct {
	Roots   []string `json:"roots"`
	Modules []string `json:"modules"`
}

const diskManifest = "disk-modules.json"

// DiskModulesFor extracts DiskModules (and what they depend on) from the
// kernel's cached package once, next to the kernel, and returns the
// uncompressed .ko files in load order; built-in roots are left out. The
// kernel's own manifest and files are never rewritten: other guests may be
// booting from them.
func DiskModulesFor(ctx context.Context, k *Kernel) ([]string, error) {
	dir := filepath.Dir(k.Vmlinuz)
	debs, _ := filepath.Glob(filepath.Join(dir, "download", "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("kernel %s: want its one cached package in %s/download, found %d", k.Package, dir, len(debs))
	}
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	manifest := filepath.Join(dir, diskManifest)
	if data, err := os.ReadFile(manifest); err == nil {
		var m diskModules
		if json.Unmarshal(data, &m) == nil && strings.Join(m.Roots, ",") == strings.Join(DiskModules, ",") && allExist(m.Modules) {
			return m.Modules, nil
		}
	}
	mods, err := extractModules(ctx, debs[0], filepath.Join(dir, "disk-modules"), DiskModules)
	if err != nil {
		return nil, fmt.Errorf("extracting the disk modules from %s: %w", debs[0], err)
	}
	data, err := json.MarshalIndent(diskModules{Roots: DiskModules, Modules: mods}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(manifest, data, 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", manifest, err)
	}
	return mods, nil
}

func allExist(files []string) bool {
	for _, f := range files {
		if !fileExists(f) {
			return false
		}
	}
	return len(files) > 0
}

// extractModules writes roots and their dependencies, uncompressed, into
// dir and returns them in load order. A root the package lists in
// modules.builtin is skipped; any other missing module is an error.
func extractModules(ctx context.Context, deb, dir string, roots []string) ([]string, error) {
	want := map[string]bool{}
	for _, r := range roots {
		want[moduleName(r)] = true
	}
	deps := moduleDeps{}
	found := map[string]string{}
	var builtin map[string]bool
	for pass := 0; pass < 5; pass++ {
		files, bi, err := scanModules(ctx, deb, dir, want, found)
		if err != nil {
			return nil, err
		}
		if bi != nil {
			builtin = bi
		}
		for n, f := range files {
			ko, err := decompressModule(ctx, f, dir)
			if err != nil {
				return nil, err
			}
			ds, err := moduleDepends(ko)
			if err != nil {
				return nil, err
			}
			deps[n], found[n] = ds, ko
		}
		// Dependencies found in this pass are looked for in the next one
		// (adding them to want while ranging over it would be hit or miss).
		var more []string
		for n := range want {
			if _, ok := found[n]; !ok {
				if builtin[n] {
					deps[n] = nil
					continue
				}
				return nil, fmt.Errorf("module %s is neither in the package nor built in", n)
			}
			for _, d := range deps[n] {
				if !want[d] {
					more = append(more, d)
				}
			}
		}
		if len(more) > 0 {
			for _, d := range more {
				want[d] = true
			}
			continue
		}
		order, err := deps.loadOrder(roots)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, n := range order {
			if ko, ok := found[n]; ok {
				out = append(out, ko)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("module dependencies of %v did not resolve after several passes", roots)
}

// scanModules streams the package once, copying the wanted modules not yet
// found into dir (as packaged, maybe compressed) and reading
// modules.builtin.
func scanModules(ctx context.Context, deb, dir string, want map[string]bool, found map[string]string) (map[string]string, map[string]bool, error) {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting dpkg-deb: %w", err)
	}
	files := map[string]string{}
	var builtin map[string]bool
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			_ = cmd.Wait()
			return nil, nil, fmt.Errorf("reading %s: %w", deb, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case strings.HasPrefix(name, "lib/modules/") && path.Base(name) == "modules.builtin":
			builtin = map[string]bool{}
			sc := bufio.NewScanner(tr)
			for sc.Scan() {
				if l := strings.TrimSpace(sc.Text()); l != "" {
					builtin[moduleName(l)] = true
				}
			}
			err = sc.Err()
		case strings.HasPrefix(name, "lib/modules/") && isModuleFile(name):
			n := moduleName(name)
			if _, done := found[n]; want[n] && !done {
				dst := filepath.Join(dir, "packaged", path.Base(name))
				files[n] = dst
				err = writeMember(tr, dst)
			}
		}
		if err != nil {
			_ = cmd.Wait()
			return nil, nil, fmt.Errorf("extracting %s from %s: %w", name, deb, err)
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, stderr.String())
	}
	return files, builtin, nil
}

// MakeStateDisk creates a raw ext4 image of size bytes at p (mkfs's
// default features, journal included): the disk the two-boot scenario
// keeps the daemon's state directory on.
func MakeStateDisk(ctx context.Context, p string, size int64) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("creating %s: %w", p, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("sizing %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if _, err := runCommand(ctx, "", "mkfs.ext4", "-q", "-F", "-L", "spstate", p); err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w", p, err)
	}
	return nil
}

// CopyDisk copies a disk image so that two second boots can each start
// from what the first boot left.
func CopyDisk(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	return out.Close()
}
