package test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// mountTiny mounts a tmpfs of size bytes at dir (root only), or skips.
func mountTiny(t *testing.T, dir, size string) {
	require.NoError(t, os.MkdirAll(dir, 0o700))
	if os.Geteuid() != 0 {
		t.Skip("mounting a size-limited tmpfs needs root")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// fill writes a file until the filesystem is full.
func fill(t *testing.T, path string) {
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "filling: %v", err)
			return
		}
	}
}

// With the state filesystem full, isolations still happen; the store's
// failure degrades status (exit 3) and is counted, what was done is held in
// memory, and it is all written once space comes back: nothing is later
// taken for someone else's work.
func TestFullDiskIsLoudAndNothingIsLost(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	mnt := filepath.Join(t.TempDir(), "mnt")
	mountTiny(t, mnt, "8m")
	state := filepath.Join(mnt, "state")
	d := startDaemon(t, m, daemonOpts{state: state})
	filler := filepath.Join(mnt, "filler")
	fill(t, filler)

	pages := []uint64{0x1a00, 0x1b00, 0x1c00}
	for _, p := range pages {
		require.NoError(t, m.InjectMemoryCE(p<<12, 2, 1))
	}
	require.NoError(t, m.InjectCacheCE(2, 5))
	require.Eventually(t, func() bool {
		return len(m.Offlined()) == len(pages) && m.read(t, "sys/devices/system/cpu/offline") == "2"
	}, 20*time.Second, 10*time.Millisecond, "the kernel work goes on with a full disk")
	require.Eventually(t, func() bool { return d.status().HeldWrites > 0 }, 10*time.Second, 10*time.Millisecond)
	out, code := d.cli("status")
	require.Equal(t, 3, code, out)
	require.Contains(t, out, "store writes failing")
	require.Positive(t, d.status().StoreFailures)

	require.NoError(t, os.Remove(filler))
	require.Eventually(t, func() bool { return d.status().HeldWrites == 0 }, 20*time.Second, 20*time.Millisecond,
		"held records are written when space comes back")
	require.Eventually(t, func() bool { _, code := d.cli("status"); return code == 0 }, 10*time.Second, 50*time.Millisecond)
	isolated := map[fault.Resource]bool{}
	for _, c := range d.faulty() {
		for _, a := range c.Actions {
			if a.Outcome == fault.OutcomeIsolated {
				isolated[a.Resource] = true
			}
		}
	}
	for _, p := range pages {
		require.True(t, isolated[fault.Page(p)], "page %#x recorded", p)
	}
	require.True(t, isolated[fault.CPU(2)])
	s := d.status()
	require.Empty(t, s.Budgets.CPUsOfflineByOther, "our CPU is not taken for someone else's")
	require.False(t, strings.Contains(d.log.String(), "offlined by someone else"))
}
