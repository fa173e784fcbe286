package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/fault"
)

// fakeSource sends what it is given; on StopAfterDrain it sends its
// drain records and returns; fail makes Run return that error.
type fakeSource struct {
	name  string
	send  chan fault.Event
	drain []fault.Event
	stop  chan struct{}
	fail  chan error
	once  sync.Once
}

func newFake(name string) *fakeSource {
	return &fakeSource{name: name, send: make(chan fault.Event), stop: make(chan struct{}), fail: make(chan error, 1)}
}

func (f *fakeSource) Name() string { return f.name }

func (f *fakeSource) Run(ctx context.Context, out chan<- fault.Event) error {
	for {
		select {
		case ev := <-f.send:
			out <- ev
		case <-f.stop:
			for _, ev := range f.drain {
				select {
				case out <- ev:
				case <-ctx.Done():
					return nil
				}
			}
			return nil
		case err := <-f.fail:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

func (f *fakeSource) StopAfterDrain() { f.once.Do(func() { close(f.stop) }) }

// opener is a table row's open function whose answer the test changes.
type opener struct {
	mu  sync.Mutex
	src fault.EventSource
	err error
}

func (o *opener) set(src fault.EventSource, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.src, o.err = src, err
}

func (o *opener) open(context.Context) (fault.EventSource, string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return nil, "", o.err
	}
	return o.src, "fake", nil
}

// send hands a fake source an event to deliver, failing rather than
// hanging when the source is not running.
func send(t *testing.T, ch chan fault.Event, ev fault.Event) {
	t.Helper()
	select {
	case ch <- ev:
	case <-time.After(10 * time.Second):
		t.Fatalf("source not running to send record %d", ev.TSC)
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

type tableRig struct {
	set     *sourceSet
	out     chan fault.Event
	clock   *fakeClock
	mu      sync.Mutex
	changes []SourceChange
}

func newRig(t *testing.T, defs []sourceDef) *tableRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &tableRig{out: make(chan fault.Event, 64), clock: &fakeClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}}
	log := logrus.New()
	log.SetOutput(discard{})
	r.set = newSourceSet(ctx, r.out, defs, log, r.clock.now, func(c SourceChange) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.changes = append(r.changes, c)
	})
	t.Cleanup(func() { cancel(); r.set.wait() })
	return r
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func (r *tableRig) states() map[string]SourceState {
	out := map[string]SourceState{}
	for _, s := range r.set.status() {
		out[s.Name] = s.State
	}
	return out
}

// waitChanged waits (bounded) for a source to report that it stopped.
func (r *tableRig) waitChanged(t *testing.T) {
	t.Helper()
	select {
	case <-r.set.changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no source stopped")
	}
}

// mceEvent is one mce_record as the given path delivers it.
func mceEvent(path string, tsc uint64) fault.Event {
	src := fault.SourceTraceMCE
	if path == "ebpf" {
		src = fault.SourceEBPF
	}
	ev := fault.NewEvent(src, time.Unix(int64(tsc), 0))
	ev.Class, ev.CPU, ev.Bank, ev.Status, ev.Addr, ev.Misc, ev.TSC = fault.ClassMemory, 1, 7, 0x9c00000000000090, 0x2799040, 0x8c, tsc
	return ev
}

func TestSourceTableFallsBackAndSaysWhy(t *testing.T) {
	tr := newFake("tracefs")
	ebpf, trace, edac := &opener{}, &opener{}, &opener{}
	ebpf.set(nil, fmt.Errorf("%w: no BPF here", fault.ErrUnavailable))
	trace.set(tr, nil)
	edac.set(nil, errors.New("sysfs says EIO"))
	r := newRig(t, []sourceDef{
		{name: "ebpf", group: groupTracepoints, open: ebpf.open},
		{name: "tracefs", group: groupTracepoints, open: trace.open},
		{name: "edac-poll", group: "edac-counters", open: edac.open},
	})
	r.set.refresh()
	require.Equal(t, map[string]SourceState{"ebpf": SourceUnavailable, "tracefs": SourceArmed, "edac-poll": SourceBroken}, r.states())
	require.Equal(t, "tracefs", r.set.names())
	st := r.set.status()
	require.Equal(t, "no BPF here", st[0].Detail, "unavailable says why, once")
	require.Equal(t, []problem{{source: "edac-poll", kind: alert.SourceBlind, text: "source edac-poll broken: sysfs says EIO"}},
		r.set.problems(), "broken is a problem, unavailable is not")

	// Broken is not retried; unavailable is, after sourceRetry.
	edac.set(newFake("edac-poll"), nil)
	ebpf.set(newFake("ebpf"), nil)
	r.clock.t = r.clock.t.Add(sourceRetry - time.Second)
	r.set.refresh()
	require.Equal(t, SourceUnavailable, r.states()["ebpf"], "not retried before sourceRetry")
	r.clock.t = r.clock.t.Add(time.Second)
	r.set.refresh()
	require.Equal(t, SourceBroken, r.states()["edac-poll"])
	require.Equal(t, SourceArmed, r.states()["ebpf"])
}

// eBPF arms late: tracefs covered the gap and hands over. Every record is
// counted once: those before the attach come only through tracefs (one of
// them drained at the hand-over), those during the overlap through both,
// those after only through eBPF.
func TestSourceTableHandsOverWithoutLossOrDoubleCount(t *testing.T) {
	tr, bp := newFake("tracefs"), newFake("ebpf")
	ebpf, trace := &opener{}, &opener{}
	ebpf.set(nil, fmt.Errorf("%w: not yet", fault.ErrUnavailable))
	trace.set(tr, nil)
	r := newRig(t, []sourceDef{
		{name: "ebpf", group: groupTracepoints, open: ebpf.open},
		{name: "tracefs", group: groupTracepoints, open: trace.open},
	})
	r.set.refresh()
	require.Equal(t, "tracefs", r.set.names())

	send(t, tr.send, mceEvent("tracefs", 1)) // before eBPF: tracefs only
	// Records 2 and 3 come after the attach, so both read them; tracefs
	// still holds them and a pre-attach 0 in its buffer, delivered by the
	// drain.
	tr.drain = []fault.Event{mceEvent("tracefs", 0), mceEvent("tracefs", 2), mceEvent("tracefs", 3)}
	ebpf.set(bp, nil)
	r.clock.t = r.clock.t.Add(sourceRetry)
	r.set.refresh()
	require.Equal(t, SourceArmed, r.states()["ebpf"])
	send(t, bp.send, mceEvent("ebpf", 2))
	send(t, bp.send, mceEvent("ebpf", 3))
	r.waitChanged(t)
	send(t, bp.send, mceEvent("ebpf", 4)) // after the hand-over: eBPF only
	r.set.refresh()
	require.Equal(t, map[string]SourceState{"ebpf": SourceArmed, "tracefs": SourceStandby}, r.states())

	// 1 by tracefs, 3 by its drain, 3 by eBPF.
	require.Eventually(t, func() bool { return len(r.out) == 7 }, 10*time.Second, time.Millisecond)
	passed := map[uint64]int{}
	for len(r.out) > 0 {
		ev := <-r.out
		if !r.set.duplicate(&ev) {
			passed[ev.TSC]++
		}
	}
	require.Equal(t, map[uint64]int{0: 1, 1: 1, 2: 1, 3: 1, 4: 1}, passed, "each record once")
	require.EqualValues(t, 2, r.set.overlap.duplicates)

	// The overlap ends handoverGrace after tracefs stopped.
	r.clock.t = r.clock.t.Add(handoverGrace)
	r.set.refresh()
	require.Nil(t, r.set.overlap)
}

// Matching is one-for-one: two real records that look alike (an mc_event
// carries no counter) from one side are both kept.
func TestOverlapMatchesOneForOne(t *testing.T) {
	o := newOverlap()
	o.sides["ebpf"], o.sides["tracefs"] = true, true
	mc := func(src fault.Source) fault.Event {
		ev := fault.NewEvent(src, time.Unix(1, 0))
		ev.Class, ev.PhysAddr, ev.DIMMLabel, ev.Count = fault.ClassMemory, 0x1000, "DIMM_A1", 1
		return ev
	}
	var passed int
	for _, src := range []fault.Source{fault.SourceEBPFMC, fault.SourceEBPFMC, fault.SourceTraceMC, fault.SourceTraceMC, fault.SourceTraceMC} {
		ev := mc(src)
		if !o.duplicate(&ev) {
			passed++
		}
	}
	require.Equal(t, 3, passed, "two via eBPF matched by two via tracefs, the third tracefs one is a real third error")
	// Another path's records are never matched.
	ev := mc(fault.SourceEDACPoll)
	require.False(t, o.duplicate(&ev))
}

// The preferred source dies: the standby takes over at once, and the change
// says the group was blind in between.
func TestSourceTableStandbyTakesOver(t *testing.T) {
	tr, bp := newFake("tracefs"), newFake("ebpf")
	ebpf, trace := &opener{}, &opener{}
	ebpf.set(bp, nil)
	trace.set(tr, nil)
	r := newRig(t, []sourceDef{
		{name: "ebpf", group: groupTracepoints, open: ebpf.open},
		{name: "tracefs", group: groupTracepoints, open: trace.open},
	})
	r.set.refresh()
	require.Equal(t, map[string]SourceState{"ebpf": SourceArmed, "tracefs": SourceStandby}, r.states(), "tracefs is not even opened")

	bp.fail <- errors.New("ring buffer read failed") // buffered
	r.waitChanged(t)
	r.set.refresh()
	require.Equal(t, map[string]SourceState{"ebpf": SourceBroken, "tracefs": SourceArmed}, r.states())
	require.Equal(t, "tracefs", r.set.names())
	send(t, tr.send, mceEvent("tracefs", 9))
	require.Equal(t, uint64(9), (<-r.out).TSC)

	r.mu.Lock()
	defer r.mu.Unlock()
	var broke *SourceChange
	for i := range r.changes {
		if r.changes[i].To == SourceBroken {
			broke = &r.changes[i]
		}
	}
	require.NotNil(t, broke)
	require.Equal(t, SourceChange{Name: "ebpf", Group: groupTracepoints, From: SourceArmed, To: SourceBroken,
		Detail: "ring buffer read failed", Blind: true}, *broke)
}

// The health problems come typed from the table's states, not from their
// text: nothing armed is unarmed; the RAS tracepoints unread while another
// source runs is blind; what a running source reports keeps its kind and
// is attributed to that source.
func TestSourceTableProblemsAreTyped(t *testing.T) {
	ebpf, trace, edac := &opener{}, &opener{}, &opener{}
	ebpf.set(nil, fmt.Errorf("%w: no BPF here", fault.ErrUnavailable))
	trace.set(nil, fmt.Errorf("%w: tracefs not mounted", fault.ErrUnavailable))
	edac.set(nil, fmt.Errorf("%w: no EDAC", fault.ErrUnavailable))
	r := newRig(t, []sourceDef{
		{name: "ebpf", group: groupTracepoints, open: ebpf.open},
		{name: "tracefs", group: groupTracepoints, open: trace.open},
		{name: "edac-poll", group: "edac-counters", open: edac.open},
	})
	r.set.refresh()
	require.Equal(t, []problem{{kind: alert.Unarmed, text: "no event source is armed: hardware errors are not watched"}}, r.set.problems())

	edac.set(newFake("edac-poll"), nil)
	r.clock.t = r.clock.t.Add(sourceRetry)
	r.set.refresh()
	require.Equal(t, []problem{{source: groupTracepoints, kind: alert.SourceBlind,
		text: "no source reads the RAS tracepoints (ebpf unavailable: no BPF here; tracefs unavailable: tracefs not mounted): MCE and RAS records are not watched"}},
		r.set.problems())

	trace.set(reporting{newFake("tracefs"), []problem{{kind: alert.SourceBlind, text: "tracing_on is 0"}, {kind: alert.SourceDegraded, text: "cpu1: 3 events overrun"}}}, nil)
	r.clock.t = r.clock.t.Add(sourceRetry)
	r.set.refresh()
	require.Equal(t, []problem{
		{source: "tracefs", kind: alert.SourceBlind, text: "tracing_on is 0"},
		{source: "tracefs", kind: alert.SourceDegraded, text: "cpu1: 3 events overrun"},
	}, r.set.problems())
}

// reporting is a source that reports problems of its own, as the tracefs
// reader does.
type reporting struct {
	fault.EventSource
	ps []problem
}

func (r reporting) problems() []problem { return r.ps }

// reportingDrainer is a fallback that drains at a hand-over and reports
// problems of its own, as the tracefs reader does.
type reportingDrainer struct {
	*fakeSource
	ps []problem
}

func (r reportingDrainer) problems() []problem { return r.ps }

// A fallback standing down for the preferred source tears its instance
// down when it stops (events disabled, instance removed): what it reports
// about itself meanwhile is not a problem, since the preferred source
// reads the records. On a real kernel a health check in that window
// raised "event mce/mce_record disabled behind our back" at every
// hand-over.
func TestSourceTableStandingDownSourceReportsNoProblem(t *testing.T) {
	bp := newFake("ebpf")
	tr := reportingDrainer{newFake("tracefs"), []problem{{kind: alert.SourceBlind, text: "event mce/mce_record disabled behind our back"}}}
	ebpf, trace := &opener{}, &opener{}
	ebpf.set(nil, fmt.Errorf("%w: not yet", fault.ErrUnavailable))
	trace.set(tr, nil)
	r := newRig(t, []sourceDef{
		{name: "ebpf", group: groupTracepoints, open: ebpf.open},
		{name: "tracefs", group: groupTracepoints, open: trace.open},
	})
	r.set.refresh()
	require.Equal(t, []problem{{source: "tracefs", kind: alert.SourceBlind, text: "event mce/mce_record disabled behind our back"}},
		r.set.problems(), "the armed reader's own problems count")

	// More drain records than the rig's channel holds: tracefs stays
	// draining (armed, stopping) until the test reads them.
	for i := range cap(r.out) + 1 {
		tr.drain = append(tr.drain, mceEvent("tracefs", uint64(i)))
	}
	ebpf.set(bp, nil)
	r.clock.t = r.clock.t.Add(sourceRetry)
	r.set.refresh()
	require.Equal(t, map[string]SourceState{"ebpf": SourceArmed, "tracefs": SourceArmed}, r.states(), "tracefs still draining")
	require.Empty(t, r.set.problems(), "eBPF reads the records; the draining fallback's state is not a problem")

	for range tr.drain {
		<-r.out
	}
	r.waitChanged(t)
	r.set.refresh()
	require.Equal(t, map[string]SourceState{"ebpf": SourceArmed, "tracefs": SourceStandby}, r.states())
	require.Empty(t, r.set.problems())
}
