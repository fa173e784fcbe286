package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// sandboxOp is one step of a mount sandbox, applied in order.
type sandboxOp struct {
	kind     string // ro, rw, tmpfs, mkdir
	path     string
	optional bool // "-" prefix: a missing path is skipped, as systemd does
}

// parseSandbox reads `OP=PATH ... -- CMD ARGS...`: ro=PATH makes PATH and
// everything under it read-only, rw=PATH makes it writable again, tmpfs=PATH
// mounts an empty tmpfs on it, mkdir=PATH creates it first. A "-" before
// PATH lets a missing path pass.
func parseSandbox(args []string) ([]sandboxOp, []string, error) {
	var ops []sandboxOp
	for i, a := range args {
		if a == "--" {
			if i == len(args)-1 {
				return nil, nil, errors.New("sandbox: no command after --")
			}
			return ops, args[i+1:], nil
		}
		kind, path, ok := strings.Cut(a, "=")
		op := sandboxOp{kind: kind}
		op.path, op.optional = strings.CutPrefix(path, "-")
		switch {
		case !ok || !strings.HasPrefix(op.path, "/"):
			return nil, nil, fmt.Errorf("sandbox: %q: want OP=/PATH", a)
		case kind != "ro" && kind != "rw" && kind != "tmpfs" && kind != "mkdir":
			return nil, nil, fmt.Errorf("sandbox: %q: unknown operation %q", a, kind)
		}
		ops = append(ops, op)
	}
	return nil, nil, errors.New("sandbox: no -- before the command")
}

// cmdSandbox reproduces a systemd unit's file-system sandbox without
// systemd: it enters a mount namespace of its own, applies the operations
// and execs the command in it. It prints a result only when it fails; on
// success the command replaces it.
func cmdSandbox(_ env, args []string) (map[string]any, error) {
	ops, argv, err := parseSandbox(args)
	if err != nil {
		return nil, err
	}
	// The namespace belongs to this thread; exec must come from it.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return nil, fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
	}
	// Nothing done here may propagate back to the scenario's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("making / private: %w", err)
	}
	for _, op := range ops {
		if err := applySandboxOp(op); err != nil {
			return nil, err
		}
	}
	return nil, execCommand(argv)
}

// execCommand replaces the helper with argv, looked up in PATH unless it
// names a path; it returns only when that fails. The launch steps (sandbox,
// timerslack) end in it: what they set belongs to this thread and is kept
// across exec.
func execCommand(argv []string) error {
	bin := argv[0]
	if !strings.Contains(bin, "/") {
		p, err := lookPath(bin)
		if err != nil {
			return err
		}
		bin = p
	}
	err := syscall.Exec(bin, argv, os.Environ())
	return fmt.Errorf("exec %s: %w", bin, err)
}

func lookPath(name string) (string, error) {
	for _, d := range strings.Split(os.Getenv("PATH"), ":") {
		p := d + "/" + name
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH %q", name, os.Getenv("PATH"))
}

func applySandboxOp(op sandboxOp) error {
	if op.kind == "mkdir" {
		if err := os.MkdirAll(op.path, 0o700); err != nil {
			return fmt.Errorf("sandbox mkdir %s: %w", op.path, err)
		}
		return nil
	}
	if _, err := os.Stat(op.path); err != nil {
		if op.optional && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("sandbox %s %s: %w", op.kind, op.path, err)
	}
	switch op.kind {
	case "tmpfs":
		if err := unix.Mount("tmpfs", op.path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return fmt.Errorf("sandbox tmpfs on %s: %w", op.path, err)
		}
		return nil
	case "ro", "rw":
		// A path of its own mount (a file, a directory inside sysfs) needs
		// a bind mount first, or the change would hit its whole file
		// system. "/" is the root mount already; binding over it would
		// not be seen without a chroot.
		if op.path != "/" {
			if err := unix.Mount(op.path, op.path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("sandbox bind %s: %w", op.path, err)
			}
		}
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if op.kind == "rw" {
			attr = &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}
		}
		if err := unix.MountSetattr(unix.AT_FDCWD, op.path, unix.AT_RECURSIVE, attr); err != nil {
			return fmt.Errorf("sandbox %s %s: mount_setattr: %w", op.kind, op.path, err)
		}
	}
	return nil
}
