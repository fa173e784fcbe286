package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/sim"
	"github.com/selfprotect/selfprotect/store"
)

// Rate-engine counts survive a restart and a SIGHUP: the engines are
// rebuilt from the stored errors of the window (or kept when the rules do
// not change).
func TestEngineCountsSurviveRestartAndReload(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte("mode: enforce\n"), 0o644))
	opts := daemonOpts{args: []string{"--config", policy}}
	d := startDaemon(t, m, opts)

	// Restart between the two errors of page A.
	require.NoError(t, m.InjectMemoryCE(0xa000, 1, 1))
	d.settle(200 * time.Millisecond)
	d.stop()
	opts.state = d.state
	d = startDaemon(t, m, opts)
	require.NoError(t, m.InjectMemoryCE(0xa000, 1, 1))
	require.Eventually(t, func() bool { return len(m.Offlined()) == 1 }, 10*time.Second, 10*time.Millisecond,
		"the error before the restart counts")

	// SIGHUP with the rules unchanged between the two errors of page B.
	require.NoError(t, m.InjectMemoryCE(0xb000, 1, 1))
	d.settle(200 * time.Millisecond)
	require.NoError(t, os.WriteFile(policy, []byte("mode: enforce\nbudgets: {max_pages_per_dimm: 63}\n"), 0o644))
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(d.log.String(), "rules unchanged") }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, m.InjectMemoryCE(0xb000, 1, 1))
	require.Eventually(t, func() bool { return len(m.Offlined()) == 2 }, 10*time.Second, 10*time.Millisecond,
		"the error before the reload counts")

	// A rule change rebuilds the engines under the new threshold (3).
	require.NoError(t, m.InjectMemoryCE(0xc000, 1, 1))
	d.settle(200 * time.Millisecond)
	require.NoError(t, os.WriteFile(policy, []byte("rules: {page: {threshold: 3}}\n"), 0o644))
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(d.log.String(), "rebuilt under the new rules") }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, m.InjectMemoryCE(0xc000, 1, 1))
	d.settle(300 * time.Millisecond)
	require.Len(t, m.Offlined(), 2, "2 errors are below the new threshold")
	require.NoError(t, m.InjectMemoryCE(0xc000, 1, 1))
	require.Eventually(t, func() bool { return len(m.Offlined()) == 3 }, 10*time.Second, 10*time.Millisecond,
		"the third error trips the rebuilt engine")
}

// isolateOn8 isolates CPUs (5 cache errors each) and pages (2 errors each)
// on a fresh 8-CPU machine under the permissive crash policy and returns
// the state directory, as after a clean shutdown before a reboot.
func isolateOn8(t *testing.T, cpus []int, pages []uint64) string {
	t.Helper()
	m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 8})
	d := startDaemon(t, m, daemonOpts{policy: crashPolicy})
	for _, c := range cpus {
		require.NoError(t, m.InjectCacheCE(c, 5))
	}
	for _, p := range pages {
		require.NoError(t, m.InjectMemoryCE(p<<12, 2, 0))
	}
	d.settle(300 * time.Millisecond)
	require.Len(t, m.Offlined(), len(pages))
	d.stop()
	return d.state
}

func outcomesOf(d *daemonProc, r fault.Resource) []string {
	var out []string
	for _, c := range d.faulty() {
		for _, a := range c.Actions {
			if a.Resource == r {
				s := string(a.Outcome)
				if len(a.Violations) > 0 {
					s += " " + strings.Join(a.Violations, ",")
				}
				out = append(out, s)
			}
		}
	}
	return out
}

// After a reboot the daemon isolates again what it had isolated, as a new
// decision under today's policy: a deny-list added since is obeyed, the
// budgets are those of the machine as it is now, and refusals are stored.
func TestReplayAfterRebootUnderTodaysPolicy(t *testing.T) {
	t.Parallel()
	const page = uint64(0x2d94)
	t.Run("same policy isolates again", func(t *testing.T) {
		t.Parallel()
		state := isolateOn8(t, []int{3}, []uint64{page})
		m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 8}) // the reboot
		d := startDaemon(t, m, daemonOpts{policy: crashPolicy, state: state})
		d.settle(300 * time.Millisecond)
		require.Equal(t, "3", m.read(t, "sys/devices/system/cpu/offline"))
		require.Len(t, m.Offlined(), 1)
	})
	t.Run("deny-list added before the reboot", func(t *testing.T) {
		t.Parallel()
		state := isolateOn8(t, []int{3}, []uint64{page})
		m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 8})
		pol := crashPolicy + fmt.Sprintf("deny: {cpus: [3], pages: [%#x]}\n", page)
		d := startDaemon(t, m, daemonOpts{policy: pol, state: state})
		d.settle(300 * time.Millisecond)
		require.Equal(t, "", m.read(t, "sys/devices/system/cpu/offline"))
		require.Empty(t, m.Offlined())
		require.Contains(t, outcomesOf(d, fault.CPU(3)), "refused deny.cpus")
		require.Contains(t, outcomesOf(d, fault.Page(page)), "refused deny.pages")
	})
	t.Run("reboot onto fewer CPUs", func(t *testing.T) {
		t.Parallel()
		state := isolateOn8(t, []int{2, 5}, nil)
		m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 3})
		d := startDaemon(t, m, daemonOpts{state: state}) // default budgets: ceil(0.75 x 3) = 3 online
		d.settle(300 * time.Millisecond)
		require.Equal(t, "0-2", m.read(t, "sys/devices/system/cpu/online"), "no CPU offlined below the budget")
		require.Contains(t, outcomesOf(d, fault.CPU(2)), "refused min_online_cpu_fraction")
	})
	t.Run("reboot onto less RAM", func(t *testing.T) {
		t.Parallel()
		var pages []uint64
		for i := range 10 {
			pages = append(pages, 0x100+uint64(i))
		}
		state := isolateOn8(t, nil, pages)
		// 16 MiB: 0.1% of 4096 pages is 4 pages.
		m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 8, MemoryMB: 16})
		d := startDaemon(t, m, daemonOpts{state: state})
		d.settle(300 * time.Millisecond)
		require.LessOrEqual(t, len(m.Offlined()), 4, "the RAM share of the machine as it is now")
		require.NotEmpty(t, m.Offlined())
		refused := 0
		for _, p := range pages {
			for _, o := range outcomesOf(d, fault.Page(p)) {
				if strings.HasPrefix(o, "refused max_ram_retired_percent") {
					refused++
				}
			}
		}
		require.Equal(t, 10-len(m.Offlined()), refused)
	})
}

// A store lost to corruption is rebuilt from the kernel: pages already
// poisoned get a case, count against the budget and are never written
// again. With the decision journal beside the store, the decisions come
// back from it as ours (the write was made, the kernel shows it); with the
// journal lost too, our record of them is gone and they are isolated by
// another actor as far as anyone can tell.
func TestLostStoreRebuiltFromKpageflags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		loseJournal bool
		want        []string
	}{
		{name: "journal kept", want: []string{string(fault.OutcomeIntended), string(fault.OutcomeIsolated)}},
		{name: "journal lost", loseJournal: true, want: []string{string(fault.OutcomeIsolatedByOther)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t, intel612)
			d := startDaemon(t, m, daemonOpts{})
			require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
			require.NoError(t, m.InjectMemoryCE(0x3e85040, 2, 1))
			d.settle(300 * time.Millisecond)
			require.Len(t, m.Offlined(), 2)
			d.stop()
			db := filepath.Join(d.state, "selfprotect.db")
			for _, f := range []string{db, db + "-wal", db + "-shm"} {
				_ = os.Remove(f)
			}
			require.NoError(t, os.WriteFile(db, []byte("not a database, not at all; a disk error ate it"), 0o600))
			if tt.loseJournal {
				require.NoError(t, os.Remove(filepath.Join(d.state, store.JournalFile)))
			}

			d = startDaemon(t, m, daemonOpts{state: d.state})
			d.settle(300 * time.Millisecond)
			for _, p := range []uint64{0x2d94, 0x3e85} {
				require.Equal(t, tt.want, outcomesOf(d, fault.Page(p)))
			}
			// More errors on those pages write nothing.
			require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
			d.settle(300 * time.Millisecond)
			require.Len(t, m.Offlined(), 2)
		})
	}
}
