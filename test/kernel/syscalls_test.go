package kernel

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func fixtureTables(t *testing.T) SyscallTables {
	t.Helper()
	f, err := os.Open("testdata/syscall-filter.txt")
	require.NoError(t, err)
	defer f.Close()
	groups, err := ParseSyscallGroups(f)
	require.NoError(t, err)
	u, err := os.Open("testdata/unistd_64.h")
	require.NoError(t, err)
	defer u.Close()
	numbers, err := ParseUnistd(u)
	require.NoError(t, err)
	return SyscallTables{Groups: groups, Numbers: numbers}
}

func allowList(t *testing.T, args []string) []int {
	t.Helper()
	i := slices.Index(args, "--allow")
	require.Positive(t, i, "%v", args)
	var out []int
	for _, f := range strings.Split(args[i+1], ",") {
		n, err := strconv.Atoi(f)
		require.NoError(t, err)
		out = append(out, n)
	}
	return out
}

// Tables captured from systemd 252 and linux-libc-dev 6.1 (Debian 12).
func TestSeccompArgsFromFixtures(t *testing.T) {
	tables := fixtureTables(t)
	require.Equal(t, 1, tables.Numbers["write"])
	require.Equal(t, 321, tables.Numbers["bpf"])
	require.Contains(t, tables.Groups["@system-service"], "@basic-io")

	h, err := ParseHardening(strings.NewReader("[Service]\nSystemCallFilter=@system-service bpf\nSystemCallFilter=perf_event_open\n" +
		"SystemCallErrorNumber=EPERM\nSystemCallArchitectures=native\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\nMemoryDenyWriteExecute=yes\n"))
	require.NoError(t, err)
	args, err := h.SeccompArgs(tables)
	require.NoError(t, err)
	require.Equal(t, []string{"guest", "seccomp"}, args[:2])
	require.Equal(t, []string{"--errno", "1", "--families", "1,2,10", "--mdwe", "--"}, args[4:])
	allowed := allowList(t, args)
	for _, name := range []string{"read", "write", "futex", "execve", "exit_group", "bpf", "perf_event_open", "socket", "mmap", "epoll_pwait", "ioctl"} {
		require.Contains(t, allowed, tables.Numbers[name], name)
	}
	for _, name := range []string{"mount", "reboot", "init_module", "kexec_load", "swapon", "ptrace", "settimeofday"} {
		require.NotContains(t, allowed, tables.Numbers[name], "%s is outside @system-service", name)
	}
	require.True(t, slices.IsSorted(allowed))

	none, err := Hardening{}.SeccompArgs(tables)
	require.NoError(t, err)
	require.Nil(t, none)
	_, err = Hardening{SystemCallFilter: []string{"@no-such-group"}}.SeccompArgs(tables)
	require.ErrorContains(t, err, "unknown system call group @no-such-group")
	_, err = Hardening{SystemCallFilter: []string{"read"}, SystemCallErrorNumber: "EWHAT"}.SeccompArgs(tables)
	require.ErrorContains(t, err, `unknown errno "EWHAT"`)

	for unit, wantErr := range map[string]string{
		"SystemCallFilter=~@mount\n":           "inverted",
		"SystemCallArchitectures=x86\n":        "native architecture only",
		"RestrictAddressFamilies=AF_BOGUS\n":   `address family "AF_BOGUS"`,
		"RestrictAddressFamilies=~AF_PACKET\n": "inverted",
		"MemoryDenyWriteExecute=sure\n":        "not a boolean",
	} {
		_, err := ParseHardening(strings.NewReader("[Service]\n" + unit))
		require.ErrorContains(t, err, wantErr, unit)
	}
}

func TestParseSyscallTablesRejectsOtherInput(t *testing.T) {
	_, err := ParseSyscallGroups(strings.NewReader("@aio\n    io_setup\n"))
	require.ErrorContains(t, err, "no @default or @system-service")
	_, err = ParseUnistd(strings.NewReader("#define __NR_read 3\n#define __NR_write 4\n"))
	require.ErrorContains(t, err, "not the x86-64 table")
}

// The host's own tables (what the suite uses) agree with the kernel
// headers x/sys was generated from.
func TestHostSyscallTables(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze on this host")
	}
	if !fileExists(UnistdHeader) {
		t.Skip("no " + UnistdHeader)
	}
	tables, err := LoadSyscallTables(context.Background())
	require.NoError(t, err)
	require.Equal(t, unix.SYS_BPF, tables.Numbers["bpf"])
	require.Equal(t, unix.SYS_PERF_EVENT_OPEN, tables.Numbers["perf_event_open"])
	require.Equal(t, unix.SYS_MOUNT, tables.Numbers["mount"])
	h, err := LoadHardening(UnitFile)
	require.NoError(t, err)
	args, err := h.SeccompArgs(tables)
	require.NoError(t, err)
	allowed := allowList(t, args)
	require.Contains(t, allowed, unix.SYS_BPF, "the unit lets the eBPF source load")
	require.NotContains(t, allowed, unix.SYS_MOUNT)
}
