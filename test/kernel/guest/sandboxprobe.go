package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sandboxProbe is one thing a hardened unit must not let its service do,
// tried for real: nil when the kernel allowed it, else the errno.
type sandboxProbe struct {
	name string
	try  func() error
}

// cmdSandboxProbe tries each of sandboxProbes and reports, per probe, "ok"
// or the errno's name. Run inside a unit with the daemon's settings, each
// must be refused; run as plain root beside it, each must get past the
// privilege checks (some then fail on their deliberately bad arguments,
// with an errno other than the sandbox's), which is what shows the probe
// can tell the two apart. Nothing it does lasts: whatever a probe changes
// is on a thread that exits with it, or undone at once.
func cmdSandboxProbe(_ env, _ []string) (map[string]any, error) {
	out := map[string]any{}
	for _, p := range sandboxProbes() {
		out[p.name] = errnoName(p.try())
	}
	return out, nil
}

func errnoName(err error) string {
	if err == nil {
		return "ok"
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	return err.Error()
}

func sandboxProbes() []sandboxProbe {
	return []sandboxProbe{
		// ProtectKernelModules (and the filter's missing @module): the
		// capability check comes before the descriptor's, so plain root
		// gets EBADF.
		{"finit_module", func() error { return unix.FinitModule(-1, "", 0) }},
		// ProtectKernelModules also hides the module tree.
		{"read_modules_dir", func() error {
			_, err := os.ReadDir("/usr/lib/modules")
			return err
		}},
		// ProtectClock: setting the clock to what it reads.
		{"clock_settime", func() error {
			var now unix.Timespec
			if err := unix.ClockGettime(unix.CLOCK_REALTIME, &now); err != nil {
				return fmt.Errorf("reading the clock: %w", err)
			}
			return unix.ClockSettime(unix.CLOCK_REALTIME, &now)
		}},
		// ProtectControlGroups: the cgroup tree read-only.
		{"cgroup_mkdir", func() error {
			dir := "/sys/fs/cgroup/selfprotect-sandbox-probe"
			if err := unix.Mkdir(dir, 0o755); err != nil {
				return err
			}
			return unix.Rmdir(dir)
		}},
		// RestrictNamespaces: the service holds CAP_SYS_ADMIN, so only
		// the filter stands between it and a new namespace.
		{"unshare_uts", func() error { return onThrowawayThread(func() error { return unix.Unshare(unix.CLONE_NEWUTS) }) }},
		// RestrictRealtime.
		{"sched_fifo", func() error {
			return onThrowawayThread(func() error {
				return unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}, 0)
			})
		}},
		// RestrictSUIDSGID, in the service's private /tmp.
		{"chmod_setuid", func() error {
			f, err := os.CreateTemp("", "sandbox-probe-")
			if err != nil {
				return fmt.Errorf("creating a file to chmod: %w", err)
			}
			f.Close()
			defer os.Remove(f.Name())
			return unix.Chmod(f.Name(), 0o4755)
		}},
		// LockPersonality.
		{"personality", func() error {
			return onThrowawayThread(func() error {
				_, _, e := unix.Syscall(unix.SYS_PERSONALITY, 0x0008 /* PER_LINUX32 */, 0, 0)
				return errnoOrNil(e)
			})
		}},
		// MemoryDenyWriteExecute.
		{"mmap_write_exec", func() error {
			m, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				return err
			}
			return unix.Munmap(m)
		}},
		// RestrictAddressFamilies: netlink is not among the unit's.
		{"netlink_socket", func() error {
			fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
			if err != nil {
				return err
			}
			return unix.Close(fd)
		}},
		// ProtectHostname: setting the name it has.
		{"sethostname", func() error {
			name, err := os.Hostname()
			if err != nil {
				return fmt.Errorf("reading the host name: %w", err)
			}
			return unix.Sethostname([]byte(name))
		}},
		// ProtectKernelLogs: the kernel log buffer's size, a read.
		{"syslog", func() error {
			_, err := unix.Klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, nil)
			return err
		}},
		// SystemCallFilter=@system-service leaves out @reboot, @swap,
		// @mount and @raw-io; the service holds CAP_SYS_ADMIN, so for
		// swapon and mount only the filter refuses. Bad magic, a missing
		// file and a missing mount point make root's calls fail harmlessly
		// past the privilege check; ioperm switching nothing on succeeds.
		{"reboot", func() error {
			_, _, e := unix.Syscall6(unix.SYS_REBOOT, 0, 0, 0, 0, 0, 0)
			return errnoOrNil(e)
		}},
		{"swapon", func() error {
			p, err := unix.BytePtrFromString("/nonexistent-sandbox-probe")
			if err != nil {
				return err
			}
			_, _, e := unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), 0, 0)
			return errnoOrNil(e)
		}},
		{"mount", func() error { return unix.Mount("none", "/nonexistent-sandbox-probe", "tmpfs", 0, "") }},
		{"ioperm", func() error { return unix.Ioperm(0x80, 1, 0) }},
		// SystemCallArchitectures=native: getpid through the i386 ABI, in
		// a process of its own, since the filter may kill the caller
		// rather than fail the call.
		{"i386_syscall", i386Syscall},
	}
}

func errnoOrNil(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// onThrowawayThread runs fn on an OS thread that no other goroutine runs
// on after it: what fn changes (a namespace, a scheduling policy, a
// personality) is the thread's and goes with it. The runtime ends the
// thread when the goroutine exits locked to it, or, if that thread is the
// process's main one, parks it for good.
func onThrowawayThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		done <- fn()
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return errors.New("the probe's thread did not return in 10 s")
	}
}
