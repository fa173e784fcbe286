package kernel

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// InjectModules are the kernel modules every guest loads: mce-inject for
// machine-check records, hwpoison-inject for page poisoning.
var InjectModules = []string{"mce-inject", "hwpoison-inject"}

// Kernel is one extracted kernel package, ready to boot.
type Kernel struct {
	Series  Series `json:"series"`
	Package string `json:"package"`
	Version string `json:"version"`
	Release string `json:"release"` // the lib/modules/<release> directory, i.e. uname -r
	Vmlinuz string `json:"vmlinuz"`
	// Modules are uncompressed .ko files in load order (dependencies first).
	Modules []string `json:"modules"`
}

const kernelManifest = "kernel.json"

func lockFile(p string) (func(), error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

func readManifest(dir string) (*Kernel, error) {
	data, err := os.ReadFile(filepath.Join(dir, kernelManifest))
	if err != nil {
		return nil, err
	}
	var k Kernel
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("parsing manifest in %s: %w", dir, err)
	}
	for _, f := range append([]string{k.Vmlinuz}, k.Modules...) {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("manifest in %s names a missing file: %w", dir, err)
		}
	}
	return &k, nil
}

// extractKernel copies vmlinuz and the inject modules (with whatever they
// depend on) out of the package. Only those files are written: the full
// package unpacks to ~400 MB of modules the guest never loads. Packages do
// not ship modules.dep (depmod makes it at install), so dependencies come
// from each module's own .modinfo "depends=" entry.
func extractKernel(ctx context.Context, deb, dir string, k *Kernel) error {
	want := map[string]bool{}
	for _, m := range InjectModules {
		want[moduleName(m)] = true
	}
	deps := moduleDeps{}
	found := map[string]string{} // module name → uncompressed .ko
	for pass := 0; pass < 4; pass++ {
		res, err := scanPackage(ctx, deb, dir, want)
		if err != nil {
			return err
		}
		if res.vmlinuz != "" {
			k.Vmlinuz = res.vmlinuz
		}
		if res.release != "" {
			k.Release = res.release
		}
		for n, f := range res.modules {
			ko, err := decompressModule(ctx, f, filepath.Join(dir, "modules"))
			if err != nil {
				return err
			}
			if ds, err := moduleDepends(ko); err != nil {
				return err
			} else {
				deps[n] = ds
			}
			found[n] = ko
		}
		missing := false
		for n := range want {
			if _, ok := found[n]; !ok {
				return fmt.Errorf("module %s is not in the package (kernel built without it?)", n)
			}
			for _, d := range deps[n] {
				if !want[d] {
					want[d], missing = true, true
				}
			}
		}
		if missing {
			continue
		}
		if k.Vmlinuz == "" {
			return errors.New("package has no boot/vmlinuz-*")
		}
		order, err := deps.loadOrder(InjectModules)
		if err != nil {
			return err
		}
		k.Modules = nil
		for _, n := range order {
			k.Modules = append(k.Modules, found[n])
		}
		return nil
	}
	return errors.New("module dependencies did not resolve after several passes")
}

type scanResult struct {
	vmlinuz, release string
	modules          map[string]string
}

// scanPackage streams the package's data tarball from dpkg-deb and writes
// the wanted members into dir.
func scanPackage(ctx context.Context, deb, dir string, want map[string]bool) (scanResult, error) {
	res := scanResult{modules: map[string]string{}}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("starting dpkg-deb: %w", err)
	}
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			_ = cmd.Wait()
			return res, fmt.Errorf("reading %s: %w", deb, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case strings.HasPrefix(name, "boot/vmlinuz-"):
			res.vmlinuz = filepath.Join(dir, "vmlinuz")
			err = writeMember(tr, res.vmlinuz)
		case strings.HasPrefix(name, "lib/modules/") && isModuleFile(name) && want[moduleName(name)]:
			res.release = strings.Split(name, "/")[2]
			dst := filepath.Join(dir, "modules", path.Base(name))
			res.modules[moduleName(name)] = dst
			err = writeMember(tr, dst)
		}
		if err != nil {
			_ = cmd.Wait()
			return res, fmt.Errorf("extracting %s from %s: %w", name, deb, err)
		}
	}
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, stderr.String())
	}
	return res, nil
}

func writeMember(r io.Reader, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
