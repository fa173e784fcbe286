package kernel

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// UnistdHeader is where Debian's linux-libc-dev keeps the x86-64 system
// call numbers.
const UnistdHeader = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"

// SyscallTables is what compiling a SystemCallFilter needs from the host:
// systemd's groups (`systemd-analyze syscall-filter`, so the groups are
// systemd's own, not a copy that could drift) and the x86-64 numbers.
type SyscallTables struct {
	Groups  map[string][]string // "@system-service" -> members (names and @groups)
	Numbers map[string]int
}

// LoadSyscallTables runs systemd-analyze and reads UnistdHeader.
func LoadSyscallTables(ctx context.Context) (SyscallTables, error) {
	out, err := exec.CommandContext(ctx, "systemd-analyze", "syscall-filter").Output()
	if err != nil {
		return SyscallTables{}, fmt.Errorf("systemd-analyze syscall-filter: %w", err)
	}
	groups, err := ParseSyscallGroups(strings.NewReader(string(out)))
	if err != nil {
		return SyscallTables{}, err
	}
	f, err := os.Open(UnistdHeader)
	if err != nil {
		return SyscallTables{}, fmt.Errorf("system call numbers: %w", err)
	}
	defer f.Close()
	numbers, err := ParseUnistd(f)
	if err != nil {
		return SyscallTables{}, fmt.Errorf("%s: %w", UnistdHeader, err)
	}
	return SyscallTables{Groups: groups, Numbers: numbers}, nil
}

// ParseSyscallGroups reads `systemd-analyze syscall-filter`: a group name
// at the start of a line, its members indented, comments after "#".
func ParseSyscallGroups(r io.Reader) (map[string][]string, error) {
	groups := map[string][]string{}
	cur := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
		case !strings.HasPrefix(line, " ") && strings.HasPrefix(trimmed, "@"):
			cur = trimmed
			groups[cur] = nil
		case cur != "" && strings.HasPrefix(line, " "):
			groups[cur] = append(groups[cur], trimmed)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(groups["@default"]) == 0 || len(groups["@system-service"]) == 0 {
		return nil, fmt.Errorf("systemd-analyze syscall-filter: no @default or @system-service group among %d", len(groups))
	}
	return groups, nil
}

// ParseUnistd reads `#define __NR_name number` lines.
func ParseUnistd(r io.Reader) (map[string]int, error) {
	out := map[string]int{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "#define" || !strings.HasPrefix(f[1], "__NR_") {
			continue
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			continue // an alias defined by another name
		}
		out[strings.TrimPrefix(f[1], "__NR_")] = n
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if out["read"] != 0 || out["write"] != 1 || len(out) < 300 {
		return nil, fmt.Errorf("not the x86-64 table (%d names, write=%d)", len(out), out["write"])
	}
	return out, nil
}

// expand resolves names and @groups to the numbers that exist on x86-64;
// names of other architectures (arm_fadvise64_64...) drop out, as systemd
// drops them.
func (t SyscallTables) expand(names []string) ([]int, error) {
	set := map[int]bool{}
	seen := map[string]bool{}
	var walk func(n string) error
	walk = func(n string) error {
		if seen[n] {
			return nil
		}
		seen[n] = true
		if strings.HasPrefix(n, "@") {
			members, ok := t.Groups[n]
			if !ok {
				return fmt.Errorf("unknown system call group %s", n)
			}
			for _, m := range members {
				if err := walk(m); err != nil {
					return err
				}
			}
			return nil
		}
		if nr, ok := t.Numbers[n]; ok {
			set[nr] = true
		}
		return nil
	}
	for _, n := range names {
		if err := walk(n); err != nil {
			return nil, err
		}
	}
	out := make([]int, 0, len(set))
	for nr := range set {
		out = append(out, nr)
	}
	sort.Ints(out)
	return out, nil
}

var addressFamilies = map[string]int{
	"AF_UNIX": unix.AF_UNIX, "AF_LOCAL": unix.AF_LOCAL, "AF_INET": unix.AF_INET, "AF_INET6": unix.AF_INET6,
	"AF_NETLINK": unix.AF_NETLINK, "AF_PACKET": unix.AF_PACKET, "AF_VSOCK": unix.AF_VSOCK,
}

func errnoNumber(name string) (int, error) {
	for e := unix.Errno(1); e < 200; e++ {
		if unix.ErrnoName(e) == name {
			return int(e), nil
		}
	}
	return 0, fmt.Errorf("unknown errno %q", name)
}

// SeccompArgs is the guest helper command that installs the unit's
// system-call sandbox, ending in "--", or nil when the unit has none. As
// systemd does, an allow-list always includes @default.
func (h Hardening) SeccompArgs(t SyscallTables) ([]string, error) {
	var args []string
	if len(h.SystemCallFilter) > 0 {
		nrs, err := t.expand(append([]string{"@default"}, h.SystemCallFilter...))
		if err != nil {
			return nil, err
		}
		list := make([]string, len(nrs))
		for i, n := range nrs {
			list[i] = strconv.Itoa(n)
		}
		args = append(args, "--allow", strings.Join(list, ","))
		errno := unix.EPERM
		if h.SystemCallErrorNumber != "" {
			n, err := errnoNumber(h.SystemCallErrorNumber)
			if err != nil {
				return nil, err
			}
			errno = unix.Errno(n)
		}
		args = append(args, "--errno", strconv.Itoa(int(errno)))
	}
	if len(h.RestrictAddressFamilies) > 0 {
		var fams []string
		for _, f := range h.RestrictAddressFamilies {
			fams = append(fams, strconv.Itoa(addressFamilies[f]))
		}
		args = append(args, "--families", strings.Join(fams, ","))
	}
	if h.MemoryDenyWriteExecute {
		args = append(args, "--mdwe")
	}
	if len(args) == 0 {
		return nil, nil
	}
	return append(append([]string{"guest", "seccomp"}, args...), "--"), nil
}
