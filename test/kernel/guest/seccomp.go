package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// seccompPolicy is the part of a unit's system-call sandbox the guest
// reproduces, as systemd compiles it for x86-64: SystemCallFilter (an
// allow-list, already expanded to numbers by the host), SystemCallErrorNumber,
// SystemCallArchitectures=native, RestrictAddressFamilies and
// MemoryDenyWriteExecute (its mmap/mprotect rules).
type seccompPolicy struct {
	allow    []uint32 // syscall numbers; empty: every call allowed
	errno    uint32   // returned for a call outside allow
	families []uint32 // socket() domains allowed; empty: any
	mdwe     bool
}

// parseSeccomp reads `[--allow N,N...] [--errno N] [--families N,N...]
// [--mdwe] -- CMD ARGS...`.
func parseSeccomp(args []string) (seccompPolicy, []string, error) {
	fs := flag.NewFlagSet("seccomp", flag.ContinueOnError)
	allow := fs.String("allow", "", "allowed syscall numbers")
	errno := fs.Uint("errno", uint(unix.EPERM), "errno for a call outside the list")
	families := fs.String("families", "", "allowed socket families")
	mdwe := fs.Bool("mdwe", false, "deny writable executable memory")
	if err := fs.Parse(args); err != nil {
		return seccompPolicy{}, nil, fmt.Errorf("seccomp: %w", err)
	}
	if fs.NArg() == 0 {
		return seccompPolicy{}, nil, errors.New("seccomp: no command after the options")
	}
	p := seccompPolicy{errno: uint32(*errno), mdwe: *mdwe}
	var err error
	if p.allow, err = numberList(*allow); err != nil {
		return seccompPolicy{}, nil, fmt.Errorf("seccomp --allow: %w", err)
	}
	if p.families, err = numberList(*families); err != nil {
		return seccompPolicy{}, nil, fmt.Errorf("seccomp --families: %w", err)
	}
	return p, fs.Args(), nil
}

func numberList(s string) ([]uint32, error) {
	var out []uint32
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, err
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

// Offsets into struct seccomp_data.
const (
	seccompNr   = 0
	seccompArch = 4
	seccompArg0 = 16 // low 32 bits on little-endian x86-64
	seccompArg2 = 32
	// Syscalls numbered from here are the x32 ABI: not native.
	x32Bit = 0x40000000
)

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

const (
	ldAbs  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeq    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	jge    = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	jset   = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	andK   = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	retK   = unix.BPF_RET | unix.BPF_K
	allowR = unix.SECCOMP_RET_ALLOW
)

// program compiles the policy to classic BPF. Every comparison jumps at
// most a few instructions (jump offsets are 8 bits), so the allow-list is
// a chain of "equal: allow, else next".
func (p seccompPolicy) program() []unix.SockFilter {
	deny := uint32(unix.SECCOMP_RET_ERRNO) | p.errno&unix.SECCOMP_RET_DATA
	prog := []unix.SockFilter{
		stmt(ldAbs, seccompArch),
		jump(jeq, unix.AUDIT_ARCH_X86_64, 1, 0),
		stmt(retK, unix.SECCOMP_RET_KILL_PROCESS),
		stmt(ldAbs, seccompNr),
		jump(jge, x32Bit, 0, 1),
		stmt(retK, deny),
	}
	allowed := func(nr uint32) bool { return len(p.allow) == 0 || slices.Contains(p.allow, nr) }
	if len(p.families) > 0 && allowed(unix.SYS_SOCKET) {
		f := len(p.families)
		prog = append(prog, jump(jeq, unix.SYS_SOCKET, 0, uint8(f+3)), stmt(ldAbs, seccompArg0))
		for i, fam := range p.families {
			prog = append(prog, jump(jeq, fam, uint8(f-i), 0))
		}
		prog = append(prog, stmt(retK, unix.SECCOMP_RET_ERRNO|uint32(unix.EAFNOSUPPORT)), stmt(retK, allowR))
	}
	if p.mdwe {
		if allowed(unix.SYS_MMAP) {
			both := uint32(unix.PROT_WRITE | unix.PROT_EXEC)
			prog = append(prog, jump(jeq, unix.SYS_MMAP, 0, 5), stmt(ldAbs, seccompArg2), stmt(andK, both),
				jump(jeq, both, 0, 1), stmt(retK, unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM)), stmt(retK, allowR))
		}
		for _, nr := range []uint32{unix.SYS_MPROTECT, unix.SYS_PKEY_MPROTECT} {
			if allowed(nr) {
				prog = append(prog, jump(jeq, nr, 0, 4), stmt(ldAbs, seccompArg2),
					jump(jset, unix.PROT_EXEC, 0, 1), stmt(retK, unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM)), stmt(retK, allowR))
			}
		}
	}
	if len(p.allow) == 0 {
		return append(prog, stmt(retK, allowR))
	}
	for _, nr := range p.allow {
		prog = append(prog, jump(jeq, nr, 0, 1), stmt(retK, allowR))
	}
	return append(prog, stmt(retK, deny))
}

// install puts the filter on the calling thread (locked to its goroutine):
// only that thread is filtered, which is enough for the exec that follows.
func (p seccompPolicy) install() error {
	prog := p.program()
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("installing the seccomp filter (%d instructions): %w", len(prog), err)
	}
	runtime.KeepAlive(prog)
	return nil
}

// cmdSeccomp execs CMD under the filter. It prints a result only when it
// fails; on success the command replaces it.
func cmdSeccomp(_ env, args []string) (map[string]any, error) {
	p, argv, err := parseSeccomp(args)
	if err != nil {
		return nil, err
	}
	bin := argv[0]
	if !strings.Contains(bin, "/") {
		if bin, err = lookPath(bin); err != nil {
			return nil, err
		}
	}
	runtime.LockOSThread()
	if err := p.install(); err != nil {
		return nil, err
	}
	err = syscall.Exec(bin, argv, os.Environ())
	return nil, fmt.Errorf("exec %s under seccomp: %w", bin, err)
}
