package daemon

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
	"github.com/selfprotect/selfprotect/policy"
	"github.com/selfprotect/selfprotect/store"
)

// pageCE is a corrected DRAM error on pfn as the MCA path reports it;
// seq keeps two errors of one page apart in time.
func pageCE(pfn uint64, seq int) fault.Event {
	ev := fault.NewEvent(fault.SourceTraceMCE, time.Now().Add(-time.Minute+time.Duration(seq)*time.Millisecond))
	ev.Class, ev.Severity, ev.Vendor = fault.ClassMemory, fault.SeverityCorrected, fault.VendorIntel
	ev.CPU, ev.Bank, ev.Status = 1, 7, 0x9c00000000000090
	ev.PhysAddr, ev.AddrValid, ev.AddrLSB = pfn<<12|0x40, true, 12
	return ev
}

// readGate holds a rebuild's read of the history until released: the
// read of a long window, made as long as a test needs.
type readGate struct {
	entered chan struct{} // a token per read begun
	release chan struct{} // closed: reads go on
	exited  atomic.Int32  // reads that returned
	// lingerOnCancel delays a cancelled read's return, as a read between
	// two rows would.
	lingerOnCancel time.Duration
	opened         sync.Once
}

func newReadGate(open bool) *readGate {
	g := &readGate{entered: make(chan struct{}, 16), release: make(chan struct{})}
	if open {
		g.open()
	}
	return g
}

// open lets every read go on.
func (g *readGate) open() { g.opened.Do(func() { close(g.release) }) }

func (g *readGate) read(ctx context.Context, snap *store.EventSnapshot, q store.EventQuery, fn func(fault.Event) error) error {
	defer g.exited.Add(1)
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		time.Sleep(g.lingerOnCancel)
		return ctx.Err()
	}
	return snap.Each(ctx, q, fn)
}

// waitEntered waits for the n-th read to begin.
func (g *readGate) waitEntered(t testing.TB) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the rebuild's read did not begin")
	}
}

// loopHarness is a daemon whose main loop is the test: it observes, reloads
// and finishes rebuilds itself, beside a running history writer, in
// dry-run so that decisions touch no kernel file.
type loopHarness struct {
	d *Daemon
	// ctx is the daemon's, as Run's: it ends when the test does.
	ctx    context.Context
	q      chan fault.Event // the history writer's queue
	policy string
	gate   *readGate
	log    *logtest.Hook
}

func newLoopHarness(t *testing.T, rules string, gate *readGate) *loopHarness {
	t.Helper()
	h := &loopHarness{policy: filepath.Join(t.TempDir(), "policy.yaml"), gate: gate, q: make(chan fault.Event, 64)}
	h.setRules(t, rules)
	log := logrus.New()
	log.SetOutput(io.Discard)
	h.log = logtest.NewLocal(log)
	d, err := New(Options{Paths: kpath.Under(t.TempDir()), Log: log, PolicyPath: h.policy, DryRun: true})
	require.NoError(t, err)
	d.store, err = store.Open(filepath.Join(t.TempDir(), "state.db"))
	require.NoError(t, err)
	t.Cleanup(func() { d.store.Close() })
	d.alerts.start(context.Background(), d.store)
	t.Cleanup(d.alerts.close)
	d.readSnapshot = gate.read
	go d.storeEvents(h.q)
	t.Cleanup(func() { close(h.q); <-d.storeDone })
	t.Cleanup(d.stopRebuild) // before the store closes: its goroutine reads it
	// First: a test that failed half-way leaves no goroutine behind for
	// stopRebuild to wait on.
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	t.Cleanup(cancel)
	t.Cleanup(gate.open)
	h.d = d
	return h
}

func (h *loopHarness) setRules(t *testing.T, rules string) {
	t.Helper()
	require.NoError(t, os.WriteFile(h.policy, []byte(rules), 0o644))
}

// hold hands evs to the history writer with no flush due: it holds them
// until asked (a storm's writer sets no timer of its own).
func (h *loopHarness) hold(evs ...fault.Event) {
	h.d.storming.Store(true)
	for _, ev := range evs {
		h.q <- ev
	}
}

// storeAll has the writer store what it holds, and waits until the store
// has n events.
func (h *loopHarness) storeAll(t *testing.T, n int) {
	t.Helper()
	h.d.storming.Store(false)
	h.d.flushQ <- struct{}{}
	require.Eventually(t, func() bool {
		evs, err := h.d.store.Events(store.EventQuery{})
		require.NoError(t, err)
		return len(evs) == n
	}, 30*time.Second, 5*time.Millisecond, "the writer stores what it held")
}

// level is the installed engine's level of rule on page pfn.
func (h *loopHarness) level(t *testing.T, rule string, pfn uint64) policy.Level {
	t.Helper()
	h.d.policyMu.Lock()
	defer h.d.policyMu.Unlock()
	for _, l := range h.d.engine.Levels(fault.Page(pfn)) {
		if l.Rule == rule {
			return l
		}
	}
	t.Fatalf("no %s level for page %#x", rule, pfn)
	return policy.Level{}
}

// pageJobs counts the queued decisions on page pfn.
func (h *loopHarness) pageJobs(pfn uint64) int {
	h.d.jobs.mu.Lock()
	defer h.d.jobs.mu.Unlock()
	n := 0
	for _, j := range h.d.jobs.items {
		if j.fn == nil && j.kernel == nil && j.c.Suspect == fault.Page(pfn) {
			n++
		}
	}
	return n
}

func (h *loopHarness) logged(msg string) bool {
	for _, e := range h.log.AllEntries() {
		if strings.Contains(e.Message, msg) {
			return true
		}
	}
	return false
}

// Every record counts once in the rebuilt engine, wherever it was at the
// boundary: stored (in the snapshot), held by the history writer (in its
// copy), or observed after it (in the tail). The read is held until the
// writer has stored the held and later records too, so a read that is not
// bounded by the snapshot would count them twice. A page's count reads 0
// once it tripped, so the counts are checked below the threshold, and
// the trip at it.
func TestRebuildCountsEachRecordOnce(t *testing.T) {
	const pfn = 0x4242
	for _, tc := range []struct {
		name                string
		stored, held, after int
		threshold           int
		wantCase            bool // else: the page's count is stored+held+after
	}{
		{name: "one of each trips at 3", stored: 1, held: 1, after: 1, threshold: 3, wantCase: true},
		{name: "one of each", stored: 1, held: 1, after: 1, threshold: 4},
		{name: "stored and held", stored: 1, held: 1, threshold: 3},
		{name: "all after the boundary", after: 3, threshold: 4},
		{name: "stored twice, one after", stored: 2, after: 1, threshold: 4},
		{name: "held twice, one after", held: 2, after: 1, threshold: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := newReadGate(false)
			h := newLoopHarness(t, "rules: {page: {threshold: 10}}\n", gate)
			d, seq := h.d, 0
			next := func() fault.Event { seq++; return pageCE(pfn, seq) }
			for range tc.stored {
				require.NoError(t, d.store.AddEvents([]fault.Event{next()}))
			}
			for range tc.held {
				h.hold(next())
			}
			h.setRules(t, fmt.Sprintf("rules: {page: {threshold: %d}}\n", tc.threshold))
			d.reload(h.ctx)
			gate.waitEntered(t)
			for range tc.after {
				d.observe(next(), h.q)
			}
			total := tc.stored + tc.held + tc.after
			h.storeAll(t, total)
			gate.open()
			finishRebuilding(t, d)

			l := h.level(t, policy.RulePage, pfn)
			require.EqualValues(t, tc.threshold, l.Threshold, "the new rules")
			require.Equal(t, tc.wantCase, l.Tripped)
			runJobs(d)
			cases := casesOn(t, d, fault.Page(pfn))
			if !tc.wantCase {
				require.EqualValues(t, total, l.Count, "each record once")
				require.Empty(t, cases)
				return
			}
			require.Len(t, cases, 1)
			require.Contains(t, cases[0].Summary, fmt.Sprintf("%d corrected memory errors", total))
		})
	}
}

// runningDaemon is Run on a fixture tree with no source armed: the test
// hands records to the main loop through its intake channel and signals
// reloads through its reload channel.
type runningDaemon struct {
	d      *Daemon
	reload chan struct{}
	cancel context.CancelFunc
	done   chan error
	intake chan<- fault.Event
	log    *logtest.Hook
	policy string
}

func runDaemon(t *testing.T, rules string, gate *readGate) *runningDaemon {
	t.Helper()
	m := newMachineTree(t, 4)
	dir := t.TempDir()
	r := &runningDaemon{reload: make(chan struct{}), done: make(chan error, 1), policy: filepath.Join(dir, "policy.yaml")}
	require.NoError(t, os.WriteFile(r.policy, []byte(rules), 0o644))
	log := logrus.New()
	log.SetOutput(io.Discard)
	r.log = logtest.NewLocal(log)
	d, err := New(Options{Paths: m.paths, Log: log, StateDir: filepath.Join(dir, "state"), Socket: filepath.Join(dir, "sock"),
		PolicyPath: r.policy, NoEBPF: true, DryRun: true})
	require.NoError(t, err)
	d.readSnapshot = gate.read
	r.d = d
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- d.Run(ctx, r.reload) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return")
		}
	})
	require.Eventually(t, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		r.intake = d.intake
		return r.intake != nil
	}, 30*time.Second, 5*time.Millisecond)
	return r
}

func (r *runningDaemon) setRules(t *testing.T, rules string) {
	t.Helper()
	require.NoError(t, os.WriteFile(r.policy, []byte(rules), 0o644))
}

func (r *runningDaemon) logged(msg string) bool {
	for _, e := range r.log.AllEntries() {
		if strings.Contains(e.Message, msg) {
			return true
		}
	}
	return false
}

// pageLevel asks the running daemon for a page's level, as the control
// socket's levels request does.
func (r *runningDaemon) pageLevel(t *testing.T, pfn uint64) policy.Level {
	t.Helper()
	resp := r.d.levels(string(fault.Page(pfn)))
	require.True(t, resp.OK, resp.Error)
	for _, l := range resp.Levels {
		if l.Rule == policy.RulePage {
			return l
		}
	}
	t.Fatalf("no page level for %#x", pfn)
	return policy.Level{}
}

// The main loop takes records while the rebuild's read of the history is
// held: intake does not wait for the store. The record taken meanwhile
// counts in the old engine at once and in the rebuilt one after the swap.
func TestRebuildKeepsIntake(t *testing.T) {
	const pfn = 0x5151
	gate := newReadGate(false)
	r := runDaemon(t, "rules: {page: {threshold: 10}}\n", gate)
	r.intake <- pageCE(pfn, 1)
	require.Eventually(t, func() bool { return r.d.counters.counted.Load() == 1 }, 30*time.Second, 5*time.Millisecond)

	r.setRules(t, "rules: {page: {threshold: 3}}\n")
	r.reload <- struct{}{}
	gate.waitEntered(t)
	r.intake <- pageCE(pfn, 2)
	require.Eventually(t, func() bool { return r.d.counters.counted.Load() == 2 }, 10*time.Second, 5*time.Millisecond,
		"the main loop takes a record while the rebuild's read is held")
	l := r.pageLevel(t, pfn)
	require.EqualValues(t, 10, l.Threshold, "the old engine counts until the swap")
	require.EqualValues(t, 2, l.Count)
	require.EqualValues(t, 0, gate.exited.Load(), "the read is still held")

	gate.open()
	require.Eventually(t, func() bool { return r.logged("rebuilt under the new rules") }, 30*time.Second, 5*time.Millisecond)
	l = r.pageLevel(t, pfn)
	require.EqualValues(t, 3, l.Threshold)
	require.EqualValues(t, 2, l.Count, "both records, once each")
	r.intake <- pageCE(pfn, 3)
	require.Eventually(t, func() bool { return r.pageLevel(t, pfn).Tripped }, 30*time.Second, 5*time.Millisecond,
		"the third error trips the rebuilt engine")
}

// A daemon stopped during a rebuild ends it: Run returns only once the
// rebuild's goroutine has (it reads the store, which Run closes), and none
// is left behind.
func TestRebuildStop(t *testing.T) {
	gate := newReadGate(false)
	gate.lingerOnCancel = 200 * time.Millisecond
	r := runDaemon(t, "rules: {page: {threshold: 10}}\n", gate)
	r.setRules(t, "rules: {page: {threshold: 3}}\n")
	r.reload <- struct{}{}
	gate.waitEntered(t)
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	r.done <- nil // for the cleanup
	require.EqualValues(t, 1, gate.exited.Load(), "the read ended before Run returned")
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	require.NotContains(t, stacks, "buildBeside", "no rebuild goroutine left")
	require.True(t, r.logged("stopping during an engine rebuild"))
}

// A decision is taken once, whichever engine took it first: the old
// engine tripping during the rebuild (its case queued or stored by the
// swap) or before the boundary (its case still queued for the worker);
// the rebuilt engine, which trips on the same errors, takes none.
func TestRebuildDecidesOnce(t *testing.T) {
	const pfn = 0x6161
	for _, tc := range []struct {
		name   string
		before int // errors observed before the boundary (the old engine trips at 2)
		after  int // errors observed after it
		// worker is what the action worker does before the swap.
		worker string
	}{
		{name: "tripped during the rebuild, queued at the swap", before: 1, after: 1, worker: "barrier only"},
		{name: "tripped during the rebuild, stored by the swap", before: 1, after: 1, worker: "all"},
		{name: "tripped before the boundary, queued then", before: 2, worker: "none yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := newReadGate(true)
			// Rules that differ only where these errors do not go: both
			// engines trip on the page's second error.
			h := newLoopHarness(t, "rules: {page: {threshold: 2}}\n", gate)
			d := h.d
			seq := 0
			for range tc.before {
				seq++
				d.observe(pageCE(pfn, seq), h.q)
			}
			h.setRules(t, "rules: {page: {threshold: 2}, cpu: {threshold: 6}}\n")
			d.reload(h.ctx)
			for range tc.after {
				seq++
				d.observe(pageCE(pfn, seq), h.q)
			}
			require.Equal(t, 1, h.pageJobs(pfn), "the old engine's decision")
			switch tc.worker {
			case "barrier only":
				// The barrier is first in the queue: the old engine's
				// decision comes after it and stays queued.
				j, ok := d.jobs.pop()
				require.True(t, ok)
				require.NotNil(t, j.fn)
				d.run(context.Background(), j)
				select {
				case res := <-d.rebuildResult():
					d.finishRebuild(res)
				case <-time.After(30 * time.Second):
					t.Fatal("the rebuild did not finish")
				}
				require.Equal(t, 1, h.pageJobs(pfn), "the old engine's decision, still queued, and no other")
			case "all":
				runJobs(d)
			case "none yet":
				// The read is done at once, but the cases are read only
				// after the worker has stored what was queued before the
				// boundary.
				select {
				case res := <-d.rebuildResult():
					d.finishRebuild(res)
					t.Fatal("the rebuild finished before the worker stored the decisions queued before it")
				case <-time.After(200 * time.Millisecond):
				}
			}
			if d.rebuilding != nil {
				finishRebuilding(t, d)
			}
			require.True(t, h.level(t, policy.RulePage, pfn).Tripped, "the rebuilt engine tripped too")
			runJobs(d)
			require.Len(t, casesOn(t, d, fault.Page(pfn)), 1, "one case")
		})
	}
}

// A second rule change during a rebuild supersedes it: the first read is
// cancelled, a new boundary is taken and the newest rules are installed.
// The same rules again let the rebuild in flight go on.
func TestRebuildSecondReload(t *testing.T) {
	const pfn = 0x7171
	for _, tc := range []struct {
		name          string
		first, second int // page thresholds of the two reloads (the running rules: 10)
		wantReads     int
	}{
		{name: "new rules supersede", first: 5, second: 4, wantReads: 2},
		{name: "same rules again", first: 4, second: 4, wantReads: 1},
		{name: "back to the running rules", first: 4, second: 10, wantReads: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := newReadGate(false)
			h := newLoopHarness(t, "rules: {page: {threshold: 10}}\n", gate)
			d := h.d
			require.NoError(t, d.store.AddEvents([]fault.Event{pageCE(pfn, 1), pageCE(pfn, 2)}))
			h.setRules(t, fmt.Sprintf("rules: {page: {threshold: %d}}\n", tc.first))
			d.reload(h.ctx)
			gate.waitEntered(t)
			d.observe(pageCE(pfn, 3), h.q)
			h.setRules(t, fmt.Sprintf("rules: {page: {threshold: %d}}\n", tc.second))
			d.reload(h.ctx)
			for range tc.wantReads - 1 {
				gate.waitEntered(t)
			}
			require.Eventually(t, func() bool { return gate.exited.Load() == int32(tc.wantReads-1) }, 30*time.Second, 5*time.Millisecond,
				"the superseded read ends")
			gate.open()
			finishRebuilding(t, d)
			require.Len(t, gate.entered, 0, "no other read began")
			l := h.level(t, policy.RulePage, pfn)
			require.EqualValues(t, tc.second, l.Threshold)
			require.EqualValues(t, 3, l.Count, "each record once")
			require.Equal(t, d.cfg.Rules, d.rules.Rules, "the rules installed are the running policy's")
		})
	}
}

// The records kept during a rebuild are bounded: at the bound the rebuild
// starts again from a new boundary, which holds them (each still counts
// once); one that keeps overflowing is given up, logged, and the engines
// keep counting under the previous rules.
func TestRebuildTailBound(t *testing.T) {
	const pfn = 0x8181
	for _, tc := range []struct {
		name        string
		tailCap     int
		after       int
		wantReads   int
		wantRebuilt bool
	}{
		{name: "within the bound", tailCap: 4, after: 4, wantReads: 1, wantRebuilt: true},
		{name: "one restart", tailCap: 2, after: 4, wantReads: 2, wantRebuilt: true},
		{name: "given up", tailCap: 1, after: 4, wantReads: rebuildRestarts + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := newReadGate(false)
			h := newLoopHarness(t, "rules: {page: {threshold: 10}}\n", gate)
			d := h.d
			d.tailCap = tc.tailCap
			running := d.rules
			h.setRules(t, "rules: {page: {threshold: 5}}\n")
			d.reload(h.ctx)
			for i := range tc.after {
				d.observe(pageCE(pfn, i+1), h.q)
			}
			for range tc.wantReads {
				gate.waitEntered(t)
			}
			gate.open()
			l := h.level(t, policy.RulePage, pfn)
			if !tc.wantRebuilt {
				require.Nil(t, d.rebuilding)
				require.True(t, h.logged("they keep counting under the previous rules"))
				require.Same(t, running, d.rules, "a SIGHUP tries again")
				require.EqualValues(t, 10, l.Threshold)
				require.EqualValues(t, tc.after, l.Count)
				// The same file again: the engines still count under the
				// previous rules, so it rebuilds them.
				d.tailCap = rebuildTailCap
				d.reload(h.ctx)
				require.NotNil(t, d.rebuilding, "the same file again rebuilds")
			}
			finishRebuilding(t, d)
			if tc.wantRebuilt {
				require.Len(t, gate.entered, 0, "no other read began")
			}
			l = h.level(t, policy.RulePage, pfn)
			require.EqualValues(t, 5, l.Threshold)
			require.EqualValues(t, tc.after, l.Count, "each record once")
		})
	}
}
