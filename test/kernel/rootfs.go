package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The Debian userland the booted-systemd scenario runs the package in: the
// release the package is built for, its minimal variant plus systemd as
// PID 1. Nothing else: the unit must bring up what the daemon needs.
const (
	RootSuite  = "bookworm"
	RootMirror = "http://deb.debian.org/debian"
)

// RootPackages are installed on top of debootstrap's minbase: systemd as
// PID 1, and what the package depends on (procps: the unit reloads with
// /bin/kill), which apt would bring along with it.
var RootPackages = []string{"systemd", "systemd-sysv", "procps"}

// ErrNeedsRoot means a step of the suite must run as root (debootstrap,
// dpkg --root) and this process is not.
var ErrNeedsRoot = errors.New("needs root")

// DebianRoot debootstraps the scenario's userland once into the cache and
// returns its directory; later calls (and later runs) reuse it. A
// directory without its completion mark (an interrupted debootstrap) is
// made again.
func DebianRoot(ctx context.Context, cacheDir string) (string, error) {
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("debootstrap of the systemd scenario's root: %w", ErrNeedsRoot)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	dir := filepath.Join(cacheDir, "rootfs-"+RootSuite+"-minbase-"+strings.Join(RootPackages, "+"))
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	done := dir + ".complete"
	if fileExists(done) && fileExists(filepath.Join(dir, "lib", "systemd", "systemd")) {
		return dir, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("removing an unfinished root %s: %w", dir, err)
	}
	args := []string{"--variant=minbase", "--include=" + strings.Join(RootPackages, ","), RootSuite, dir, RootMirror}
	if out, err := runCommand(ctx, "", "debootstrap", args...); err != nil {
		// debootstrap says why on stdout (its log is in the root).
		return "", fmt.Errorf("%w\n%s", err, tail(string(out), 2000))
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// SystemdImage is what goes into one booted-systemd disk besides the
// cached root.
type SystemdImage struct {
	Deb   string            // the package under test, installed with dpkg
	Files map[string][]byte // more files, by absolute path in the guest
	// Modes of Files that are not 0644 (scripts, binaries).
	Modes map[string]os.FileMode
	// Enable are units linked into multi-user.target.wants; Mask are
	// linked to /dev/null.
	Enable, Mask []string
}

// MakeSystemdDisk writes a raw ext4 image at out holding root with img
// installed: the package through dpkg (its maintainer scripts run
// chrooted, as in an image build, so the unit is enabled, not started),
// the extra files, the unit links. The cached root is not touched.
func MakeSystemdDisk(ctx context.Context, root, out string, img SystemdImage) error {
	work, err := os.MkdirTemp(filepath.Dir(out), "root-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "root")
	if _, err := runCommand(ctx, "", "cp", "-a", root, tree); err != nil {
		return err
	}
	if img.Deb != "" {
		if _, err := runCommand(ctx, "", "dpkg", "--root="+tree, "-i", img.Deb); err != nil {
			return fmt.Errorf("installing %s into the scenario's root: %w", img.Deb, err)
		}
	}
	paths := make([]string, 0, len(img.Files))
	for p := range img.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		dst := filepath.Join(tree, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if m, ok := img.Modes[p]; ok {
			mode = m
		}
		if err := os.WriteFile(dst, img.Files[p], mode); err != nil {
			return fmt.Errorf("writing %s into the scenario's root: %w", p, err)
		}
		if err := os.Chmod(dst, mode); err != nil {
			return err
		}
	}
	etc := filepath.Join(tree, "etc", "systemd", "system")
	for _, u := range img.Enable {
		if err := relink(filepath.Join(etc, "multi-user.target.wants", u), "/etc/systemd/system/"+u); err != nil {
			return err
		}
	}
	for _, u := range img.Mask {
		if err := relink(filepath.Join(etc, u), "/dev/null"); err != nil {
			return err
		}
	}
	// Size: the root and room for the daemon's store and the journal.
	if _, err := runCommand(ctx, "", "mkfs.ext4", "-q", "-F", "-L", "sproot", "-d", tree, out, "1G"); err != nil {
		return err
	}
	return nil
}

// relink makes link point at target, replacing what was there.
func relink(link, target string) error {
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.Symlink(target, link)
}

// tail is the end of s, at most n bytes: the part of a tool's output that
// says why it failed.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
