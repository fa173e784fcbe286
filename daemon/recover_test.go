package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
	"github.com/selfprotect/selfprotect/policy"
	"github.com/selfprotect/selfprotect/store"
)

// stepClock is the daemon's injected time, safe across goroutines.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// machineTree is a fixture kernel tree: CPUs 0..n-1 present, the listed
// ones offline; 4 GiB of RAM, nothing poisoned.
type machineTree struct {
	t     *testing.T
	root  string
	paths kpath.Paths
	n     int
}

func newMachineTree(t *testing.T, n int, offline ...int) *machineTree {
	m := &machineTree{t: t, root: t.TempDir(), n: n}
	m.paths = kpath.Under(m.root).Resolve()
	m.write(m.paths.ProcPath("meminfo"), "MemTotal:        4194304 kB\nHardwareCorrupted:     0 kB\n")
	m.write(m.paths.ProcPath("kpageflags"), "")
	m.setOffline(offline...)
	return m
}

func (m *machineTree) write(p, data string) {
	m.t.Helper()
	require.NoError(m.t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(m.t, os.WriteFile(p, []byte(data), 0o644))
}

// setOffline rewrites the CPU lists and every cpuN/online file (cpu0 has
// none), as the kernel shows them.
func (m *machineTree) setOffline(offline ...int) {
	off := map[int]bool{}
	for _, n := range offline {
		off[n] = true
	}
	var on, down []string
	for n := 0; n < m.n; n++ {
		state := "1"
		if off[n] {
			state, down = "0", append(down, fmt.Sprint(n))
		} else {
			on = append(on, fmt.Sprint(n))
		}
		if n > 0 {
			m.write(m.paths.SysPath("devices/system/cpu", fmt.Sprintf("cpu%d", n), "online"), state+"\n")
		}
	}
	cpu := m.paths.SysPath("devices/system/cpu")
	m.write(filepath.Join(cpu, "present"), fmt.Sprintf("0-%d\n", m.n-1))
	m.write(filepath.Join(cpu, "possible"), fmt.Sprintf("0-%d\n", m.n-1))
	m.write(filepath.Join(cpu, "online"), strings.Join(on, ",")+"\n")
	m.write(filepath.Join(cpu, "offline"), strings.Join(down, ",")+"\n")
}

func (m *machineTree) online(n int) bool {
	m.t.Helper()
	data, err := os.ReadFile(m.paths.SysPath("devices/system/cpu", fmt.Sprintf("cpu%d", n), "online"))
	require.NoError(m.t, err)
	return strings.TrimSpace(string(data)) == "1"
}

// startedDaemon is a daemon on the tree and the store at db as Run sets
// it up, without sources or loops: its jobs are run by runJobs.
func startedDaemon(t *testing.T, m *machineTree, db string, clock *stepClock) *Daemon {
	t.Helper()
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetLevel(logrus.ErrorLevel)
	d, err := New(Options{Paths: m.paths, Log: log, Now: clock.now})
	require.NoError(t, err)
	d.store, err = store.Open(db)
	require.NoError(t, err)
	t.Cleanup(func() { d.store.Close() })
	d.alerts.start(context.Background(), d.store)
	t.Cleanup(d.alerts.close)
	// No history writer runs here: nothing to sync before a decision.
	close(d.storeDone)
	return d
}

// runJobs runs every queued job on the calling goroutine, as the action
// worker would, one at a time.
func runJobs(d *Daemon) {
	for {
		j, ok := d.jobs.pop()
		if !ok {
			return
		}
		d.run(context.Background(), j)
	}
}

// casesOn lists the stored cases whose suspect is r.
func casesOn(t *testing.T, d *Daemon, r fault.Resource) []fault.Case {
	t.Helper()
	all, err := d.store.Cases(store.CaseFilter{})
	require.NoError(t, err)
	var out []fault.Case
	for _, c := range all {
		if c.Suspect == r {
			out = append(out, c)
		}
	}
	return out
}

// cpuCase is a CPU case of ours as the engine opens it.
func cpuCase(cpu int, at time.Time) fault.Case {
	return fault.Case{ID: fmt.Sprintf("case-cpu%d-%d", cpu, at.UnixNano()), Opened: at, Rule: "cpu",
		Diagnosis: fault.DiagOfflineCPU, Suspect: fault.CPU(cpu), FRU: fmt.Sprintf("cpu %d", cpu), State: fault.CaseOpen}
}

// isolateBefore records, through the daemon's own transition points, that
// a previous run offlined cpu at `at`.
func isolateBefore(t *testing.T, d *Daemon, cpu int, at time.Time) {
	t.Helper()
	c := cpuCase(cpu, at)
	d.storeCase(c)
	d.record(fault.Action{CaseID: c.ID, Time: at, Resource: fault.CPU(cpu), Kind: "cpu-offline", Outcome: fault.OutcomeIsolated}, c)
	d.setCaseState(c.ID, fault.CaseIsolated, at, "")
}

// A CPU found offline at start that no record explains gets an
// isolated-by-other case, once: the next start knows it. A CPU of ours
// that is still offline, or one with its own record, gets none.
func TestRecoverRecordsCPUsOfflineByOthers(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		offline []int
		ours    []int // offlined by a previous run, still offline
		byOther []int // want an isolated-by-other case
	}{
		{name: "admin offlined cpu 3", offline: []int{3}, byOther: []int{3}},
		{name: "ours stays ours", offline: []int{2}, ours: []int{2}},
		{name: "ours and an admin's", offline: []int{2, 5}, ours: []int{2}, byOther: []int{5}},
		{name: "all online", offline: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachineTree(t, 8, tc.offline...)
			db := filepath.Join(t.TempDir(), "state.db")
			clock := &stepClock{t: t0}
			d := startedDaemon(t, m, db, clock)
			for _, n := range tc.ours {
				isolateBefore(t, d, n, t0.Add(-2*time.Hour))
			}
			d.recoverState()
			runJobs(d)
			for n := 0; n < 8; n++ {
				r := fault.CPU(n)
				cs := casesOn(t, d, r)
				other := contains(tc.byOther, n)
				if !other {
					for _, c := range cs {
						require.NotEqual(t, diagOfflineByOther, c.Diagnosis, "cpu %d", n)
					}
					continue
				}
				require.Len(t, cs, 1, "cpu %d", n)
				require.Equal(t, diagOfflineByOther, cs[0].Diagnosis)
				require.Equal(t, fault.CaseIsolated, cs[0].State)
				require.True(t, d.isolated.has(r) && d.byOther[r], "cpu %d marked isolated by another actor", n)
				done, a := d.alreadyActed(job{c: cpuCase(n, t0)}, r, "cpu-offline")
				require.True(t, done)
				require.Equal(t, fault.OutcomeIsolatedByOther, a.Outcome)
			}
			require.Equal(t, tc.byOther, nilIfEmpty(d.budgetStatus().CPUsOfflineByOther))

			// A restart on the same store and kernel: no second case.
			clock.advance(time.Minute)
			d2 := startedDaemon(t, m, db, clock)
			d2.recoverState()
			runJobs(d2)
			for _, n := range tc.byOther {
				require.Len(t, casesOn(t, d2, fault.CPU(n)), 1, "cpu %d recorded once", n)
				require.True(t, d2.byOther[fault.CPU(n)])
			}
		})
	}
}

// Another actor's offline that a reboot undid is not restored, and it no
// longer counts as isolated: our own rule may offline that CPU.
func TestRecoverForgetsOthersIsolationsAfterReboot(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	m := newMachineTree(t, 8, 3)
	db := filepath.Join(t.TempDir(), "state.db")
	clock := &stepClock{t: t0}
	d := startedDaemon(t, m, db, clock)
	d.recoverState()
	runJobs(d)
	require.True(t, d.byOther[fault.CPU(3)])

	m.setOffline() // reboot
	clock.advance(time.Hour)
	d2 := startedDaemon(t, m, db, clock)
	d2.recoverState()
	require.Zero(t, d2.jobs.len(), "nothing of ours to restore")
	require.False(t, d2.isolated.has(fault.CPU(3)), "back in service")
	done, _ := d2.alreadyActed(job{c: cpuCase(3, t0)}, fault.CPU(3), "cpu-offline")
	require.False(t, done)
	require.True(t, m.online(3))
}

// The CPU interval after a reboot: restoring a CPU is not paced by its own
// offline before the reboot, but restores pace each other (the second is
// refused, recorded, and restored once the interval has passed), and a
// new decision is paced by the last offline before the reboot.
// rebootWithTwoRestores isolates CPUs 2 and 5 (5 ten minutes ago), then
// reboots (both back online) 5 minutes after CPU 5 was offlined and
// recovers: two restores the CPU interval paces.
func rebootWithTwoRestores(t *testing.T) (*machineTree, *stepClock, *Daemon, time.Time) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	// 8 CPUs at 0.75: two may go offline, so only the interval can refuse.
	m := newMachineTree(t, 8, 2, 5)
	db := filepath.Join(t.TempDir(), "state.db")
	clock := &stepClock{t: t0}
	d := startedDaemon(t, m, db, clock)
	isolateBefore(t, d, 2, t0.Add(-3*time.Hour))
	isolateBefore(t, d, 5, t0.Add(-10*time.Minute))

	m.setOffline()
	clock.advance(-5 * time.Minute)
	d2 := startedDaemon(t, m, db, clock)
	d2.recoverState()
	return m, clock, d2, t0
}

func TestReplayAppliesCPUInterval(t *testing.T) {
	m, clock, d2, t0 := rebootWithTwoRestores(t)
	require.Equal(t, 2, d2.jobs.len(), "both restores queued")
	require.Equal(t, t0.Add(-10*time.Minute), d2.lastCPUOff, "the last offline before the reboot is remembered")
	runJobs(d2)
	require.False(t, m.online(2), "the first restore is not paced by anything before the reboot")
	require.True(t, m.online(5), "the second restore waits for the interval")
	acts, err := d2.store.Actions(casesOn(t, d2, fault.CPU(5))[0].ID)
	require.NoError(t, err)
	last := acts[len(acts)-1]
	require.Equal(t, fault.OutcomeRefused, last.Outcome)
	require.Equal(t, []string{"cpu_offline_interval"}, last.Violations)
	require.Contains(t, last.Detail, "restored when the interval allows")

	// The topology now shows CPU 2 offline; a new decision on CPU 6 is
	// refused by the interval too (and not held: it is not a restore).
	m.setOffline(2)
	c6 := cpuCase(6, clock.now())
	d2.jobs.push(job{c: c6, targets: []fault.Resource{fault.CPU(6)}})
	runJobs(d2)
	require.True(t, m.online(6))

	clock.advance(59 * time.Minute)
	d2.retryDeferred()
	require.Zero(t, d2.jobs.len(), "not due yet")
	clock.advance(2 * time.Minute)
	d2.retryDeferred()
	require.Equal(t, 1, d2.jobs.len(), "due: the held restore is queued again")
	runJobs(d2)
	require.False(t, m.online(5), "restored once the interval passed")
	acts, err = d2.store.Actions(casesOn(t, d2, fault.CPU(5))[0].ID)
	require.NoError(t, err)
	require.Equal(t, fault.OutcomeIsolated, acts[len(acts)-1].Outcome)
	require.Equal(t, fault.CaseIsolated, casesOn(t, d2, fault.CPU(5))[0].State)
	acts, err = d2.store.Actions(c6.ID)
	require.NoError(t, err)
	require.Equal(t, fault.OutcomeRefused, acts[len(acts)-1].Outcome)
	require.Equal(t, 0, len(d2.deferred))
}

// The action worker itself takes a held restore up once it is due, with
// no store write held to keep its retry ticker running.
func TestWorkerRetriesHeldRestore(t *testing.T) {
	m, clock, d2, _ := rebootWithTwoRestores(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d2.actLoop(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { return !m.online(2) && d2.holdsRestores() }, 30*time.Second, 10*time.Millisecond,
		"the first restore runs, the second is held")
	require.Zero(t, d2.writes.heldN.Load(), "no store write is held")
	require.True(t, m.online(5))
	clock.advance(61 * time.Minute)
	require.Eventually(t, func() bool { return !m.online(5) }, 30*time.Second, 10*time.Millisecond,
		"the worker restores CPU 5 once the interval passed")
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func nilIfEmpty(s []int) []int {
	if len(s) == 0 {
		return nil
	}
	return s
}

// The engines are rebuilt from a history far larger than one batch (read
// row by row through the store's iterator): every stored error counts,
// the decision the history calls for with no case is taken, and errors
// older than the window do not count.
func TestRebuildEngineLargeHistory(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	m := newMachineTree(t, 4)
	clock := &stepClock{t: now}
	d := startedDaemon(t, m, filepath.Join(t.TempDir(), "state.db"), clock)
	// One error on each of many pages spreads over one location: the
	// DIMM rule would (rightly) trip, which is not what this test is about.
	d.cfg.Rules.DIMM.Enabled = false

	mem := func(at time.Time, pfn uint64) fault.Event {
		ev := fault.NewEvent(fault.SourceTraceMCE, at)
		ev.Class, ev.Severity, ev.Vendor = fault.ClassMemory, fault.SeverityCorrected, fault.VendorIntel
		ev.CPU, ev.Bank, ev.Status = 1, 7, 0x9c00000000000090
		ev.PhysAddr, ev.AddrValid, ev.AddrLSB = pfn<<12|0x40, true, 12
		return ev
	}
	const pages = 10_000
	start := now.Add(-20 * time.Hour)
	batch := make([]fault.Event, 0, 5000)
	flush := func() {
		require.NoError(t, d.store.AddEvents(batch))
		batch = batch[:0]
	}
	// Older than the 24 h window: must not count.
	batch = append(batch, mem(now.Add(-25*time.Hour), 0x7000))
	for i := 0; i < pages; i++ {
		batch = append(batch, mem(start.Add(time.Duration(i)*time.Second), 0x100000+uint64(i)))
		if len(batch) == cap(batch) {
			flush()
		}
	}
	batch = append(batch, mem(now.Add(-time.Minute), 0x7000), mem(now.Add(-time.Minute), 0x8000), mem(now.Add(-30*time.Second), 0x8000))
	flush()

	d.rebuildEngine(d.stage)
	level := func(pfn uint64) policy.Level {
		for _, l := range d.engine.Levels(fault.Page(pfn)) {
			if l.Rule == policy.RulePage {
				return l
			}
		}
		t.Fatalf("no page level for %#x", pfn)
		return policy.Level{}
	}
	require.EqualValues(t, 1, level(0x100000).Count, "the oldest in-window error counts")
	require.EqualValues(t, 1, level(0x100000+pages-1).Count)
	require.EqualValues(t, 1, level(0x7000).Count, "the error before the window does not")
	require.True(t, level(0x8000).Tripped)
	require.Equal(t, 1, d.jobs.len(), "one lost decision taken: page 0x8000")
	j, _ := d.jobs.pop()
	require.Equal(t, fault.Page(0x8000), j.c.Suspect)
}

// A rule change on SIGHUP rebuilds the engines from the history, and the
// newest records are still with the history writer (it stores a calm
// batch 100 ms after its first record, a storm's after seconds): they
// count under the new rules, and are stored once, as they would have been.
func TestReloadCountsHeldEvents(t *testing.T) {
	d := quietDaemon(t)
	now := time.Now()
	d.now = func() time.Time { return now }
	q := make(chan fault.Event, 8)
	go d.storeEvents(q)
	ev := fault.NewEvent(fault.SourceTraceMCE, now.Add(-time.Second))
	ev.Class, ev.Severity, ev.Vendor = fault.ClassMemory, fault.SeverityCorrected, fault.VendorIntel
	ev.PhysAddr, ev.AddrValid, ev.AddrLSB, ev.Count = 0x5000040, true, 12, 1
	q <- ev
	// Rules that differ from the file's (none: the defaults), so the
	// reload rebuilds.
	d.policyMu.Lock()
	d.cfg.Rules.DIMM.Enabled = !d.cfg.Rules.DIMM.Enabled
	d.policyMu.Unlock()
	d.reload(context.Background())
	finishRebuilding(t, d)

	var page policy.Level
	for _, l := range d.engine.Levels(fault.Page(0x5000)) {
		if l.Rule == policy.RulePage {
			page = l
		}
	}
	require.EqualValues(t, 1, page.Count, "the error the writer held counts after the rebuild")
	close(q)
	<-d.storeDone
	evs, err := d.store.Events(store.EventQuery{})
	require.NoError(t, err)
	require.Len(t, evs, 1, "stored once")
}

// The kernel's own action on a page (ras:memory_failure_event), stored as
// the source that read it delivered it, is no error to count when the
// engines are rebuilt: through tracefs or eBPF, it decides nothing.
func TestRebuildSkipsKernelActions(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, src := range []fault.Source{fault.SourceTraceMemoryFailure, fault.SourceEBPFMemoryFailure} {
		t.Run(string(src), func(t *testing.T) {
			m := newMachineTree(t, 4)
			d := startedDaemon(t, m, filepath.Join(t.TempDir(), "state.db"), &stepClock{t: now})
			ev := fault.NewEvent(src, now.Add(-time.Minute))
			ev.Class, ev.Severity = fault.ClassMemory, fault.SeverityUncorrectedRecoverable
			ev.PhysAddr, ev.AddrValid, ev.AddrLSB = 0x9000<<12, true, 12
			require.NoError(t, d.store.AddEvents([]fault.Event{ev}))
			d.rebuildEngine(d.stage)
			require.Zero(t, d.jobs.len(), "no decision on the page the kernel took")
		})
	}
}

// finishRebuilding plays the main loop and the action worker until the
// rebuild in flight is installed.
func finishRebuilding(t testing.TB, d *Daemon) {
	t.Helper()
	require.NotNil(t, d.rebuilding, "a rebuild in flight")
	deadline := time.After(30 * time.Second)
	for d.rebuilding != nil {
		runJobs(d)
		select {
		case res := <-d.rebuildResult():
			d.finishRebuild(res)
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatal("the rebuild did not finish")
		}
	}
}
