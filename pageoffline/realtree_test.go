package pageoffline

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

// tempKernel is kpath.OS over a temp tree, plus what the kernel would do
// after a write to *_offline_page: set HWPOISON in the sparse kpageflags
// file and bump HardwareCorrupted. failNext injects one errno.
type tempKernel struct {
	kpath.OS
	p        kpath.Paths
	failNext error
	writes   int
}

func (k *tempKernel) WriteFile(name string, data []byte) error {
	k.writes++
	// As the kernel (6.11+): vm.enable_soft_offline=0 refuses soft offline.
	if sysctl, _ := os.ReadFile(k.p.ProcPath("sys/vm/enable_soft_offline")); strings.HasSuffix(name, "soft_offline_page") && string(sysctl) == "0\n" {
		return &os.PathError{Op: "write", Path: name, Err: syscall.EOPNOTSUPP}
	}
	if err := k.failNext; err != nil {
		k.failNext = nil
		return &os.PathError{Op: "write", Path: name, Err: err}
	}
	if err := k.OS.WriteFile(name, data); err != nil {
		return err
	}
	addr, err := strconv.ParseUint(strings.TrimSpace(string(data)), 0, 64)
	if err != nil {
		return &os.PathError{Op: "write", Path: name, Err: syscall.EINVAL}
	}
	f, err := os.OpenFile(k.p.ProcPath("kpageflags"), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], flagsAfter)
	if _, err := f.WriteAt(b[:], int64(addr>>12)*8); err != nil {
		return err
	}
	mi, err := os.ReadFile(k.p.ProcPath("meminfo"))
	if err != nil {
		return err
	}
	mi = regexp.MustCompile(`HardwareCorrupted:\s+0 kB`).ReplaceAll(mi, []byte("HardwareCorrupted:     4 kB"))
	return os.WriteFile(k.p.ProcPath("meminfo"), mi, 0o644)
}

func tempTree(t *testing.T) kpath.Paths {
	t.Helper()
	root := t.TempDir()
	p := kpath.Under(root)
	for _, dir := range []string{p.ProcPath("sys/vm"), p.SysPath("devices/system/memory")} {
		require.NoError(t, os.MkdirAll(dir, 0o755))
	}
	// A sparse kpageflags for 1 GiB of RAM (0x40000 PFNs) with the captured
	// flags at the test page.
	f, err := os.Create(p.ProcPath("kpageflags"))
	require.NoError(t, err)
	require.NoError(t, f.Truncate(0x40000*8))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], flagsBefore)
	_, err = f.WriteAt(b[:], testPFN*8)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	mi, err := os.ReadFile(filepath.Join("testdata", "meminfo-6.12-intel.txt"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p.ProcPath("meminfo"), mi, 0o644))
	require.NoError(t, os.WriteFile(p.ProcPath("sys/vm/enable_soft_offline"), []byte("1\n"), 0o644))
	for _, name := range []string{"soft_offline_page", "hard_offline_page"} {
		require.NoError(t, os.WriteFile(p.SysPath("devices/system/memory", name), nil, 0o600))
	}
	return p
}

func TestSoftOfflineOnTempTree(t *testing.T) {
	p := tempTree(t)
	k := &tempKernel{p: p, failNext: syscall.EAGAIN}
	o := New(p, k, Options{Sleep: (&recordingSleep{}).sleep})
	ctx := context.Background()

	require.Equal(t, fault.OutcomeDryRun, o.Isolate(ctx, fault.Page(testPFN), true).Outcome)
	require.Equal(t, fault.OutcomeNotPresent, o.Isolate(ctx, fault.Page(0x40000), false).Outcome)
	require.Zero(t, k.writes)

	a := o.Isolate(ctx, fault.Page(testPFN), false)
	require.Equal(t, fault.OutcomeIsolated, a.Outcome, a.Detail)
	require.Equal(t, 2, a.Attempts)
	require.Contains(t, a.Detail, "HardwareCorrupted 0 kB → 4 kB")
	written, err := os.ReadFile(p.SysPath("devices/system/memory/soft_offline_page"))
	require.NoError(t, err)
	require.Equal(t, "0x2a21000\n", string(written))

	poisoned, err := Poisoned(p, kpath.OS{}, testPFN)
	require.NoError(t, err)
	require.True(t, poisoned)
	again := o.Isolate(ctx, fault.Page(testPFN), false)
	require.Equal(t, fault.OutcomeIsolatedByOther, again.Outcome)
	require.Equal(t, 2, k.writes, "the second call only read")

	require.NoError(t, os.WriteFile(p.ProcPath("sys/vm/enable_soft_offline"), []byte("0\n"), 0o644))
	disabled := o.Isolate(ctx, fault.Page(testPFN+1), false)
	require.Equal(t, fault.OutcomeFailed, disabled.Outcome)
	require.Contains(t, disabled.Detail, "disabled by vm.enable_soft_offline=0")
	require.Equal(t, 3, k.writes, "the kernel refused the write")
	poisoned, err = Poisoned(p, kpath.OS{}, testPFN+1)
	require.NoError(t, err)
	require.False(t, poisoned)
}
