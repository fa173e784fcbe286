package kernel

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// ErrHostToolsMissing means a host program the suite needs is absent and
// this process may not install it (not root).
var ErrHostToolsMissing = errors.New("host tools missing")

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

// hostTool is one program the suite runs or copies, and the Debian package
// that provides it.
type hostTool struct {
	pkg     string
	present func() bool
}

func hostTools() []hostTool {
	onPath := func(name string) func() bool {
		return func() bool { _, err := exec.LookPath(name); return err == nil }
	}
	return []hostTool{
		{pkg: "qemu-system-x86", present: onPath("qemu-system-x86_64")},
		// The non-static busybox package also installs /bin/busybox, but
		// it would not run inside an initramfs without a libc.
		{pkg: "busybox-static", present: func() bool { return isStaticELF(BusyboxPath) }},
		{pkg: "cpio", present: onPath("cpio")},
		{pkg: "kmod", present: onPath("modinfo")},
		{pkg: "xz-utils", present: onPath("xz")},
		// mkfs.ext4 makes the two-boot scenario's state disk.
		{pkg: "e2fsprogs", present: onPath("mkfs.ext4")},
		// setpriv launches the daemon with the unit's capabilities.
		{pkg: "util-linux", present: onPath("setpriv")},
		// The unit's SystemCallFilter groups, as systemd defines them, and
		// the x86-64 numbers they compile to.
		{pkg: "systemd", present: onPath("systemd-analyze")},
		{pkg: "linux-libc-dev", present: func() bool { return fileExists(UnistdHeader) }},
		// The Debian root the package boots in under systemd.
		{pkg: "debootstrap", present: onPath("debootstrap")},
	}
}

// EnsureHostTools installs the suite's host packages when they are missing
// and the process runs as root; otherwise it fails naming the packages.
func EnsureHostTools(ctx context.Context, apt *Apt) error {
	missing := missingHostPackages()
	if len(missing) == 0 {
		return nil
	}
	if !apt.root {
		return fmt.Errorf("%w: install them as root: apt-get install -y --no-install-recommends %s",
			ErrHostToolsMissing, strings.Join(missing, " "))
	}
	install := append([]string{"install", "-y", "--no-install-recommends"}, missing...)
	if _, err := apt.run(ctx, "", "apt-get", install...); err != nil {
		// Stale package lists are the usual cause; refresh and retry once.
		if uerr := apt.Refresh(ctx); uerr != nil {
			return fmt.Errorf("installing %s: %s (apt-get update also failed: %s)", strings.Join(missing, " "), reason(err), reason(uerr))
		}
		if _, err := apt.run(ctx, "", "apt-get", install...); err != nil {
			return fmt.Errorf("installing %s after apt-get update: %s", strings.Join(missing, " "), reason(err))
		}
	}
	if still := missingHostPackages(); len(still) > 0 {
		return fmt.Errorf("%w after installing: %s", ErrHostToolsMissing, strings.Join(still, " "))
	}
	return nil
}

func missingHostPackages() []string {
	var missing []string
	for _, t := range hostTools() {
		if !t.present() {
			missing = append(missing, t.pkg)
		}
	}
	return missing
}

// isStaticELF reports whether path is an ELF executable without a program
// interpreter, i.e. one that runs with nothing else in the filesystem.
func isStaticELF(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
