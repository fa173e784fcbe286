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

	"github.com/selfprotect/selfprotect/fault"
)

// These tests model the kernel side of a hand-over: one tracepoint whose
// every call reaches each reader attached at that moment, a tracefs reader
// that buffers records until it reads them, and an eBPF reader that, past
// a per-key limit, counts records into an aggregate (one event carrying a
// count, built from the key's last record) instead of sending them, unless
// its aggregation is held. The daemon side is the real source set and
// overlap. Each test fires a storm on one page across a hand-over and
// requires the errors counted to equal the records fired.

// fakeTracepoint calls every attached reader, as the kernel calls each
// probe registered on a tracepoint.
type fakeTracepoint struct {
	mu      sync.Mutex
	readers map[tpReader]bool
}

type tpReader interface{ hit(fault.Event) }

func newTracepoint() *fakeTracepoint { return &fakeTracepoint{readers: map[tpReader]bool{}} }

func (k *fakeTracepoint) attach(r tpReader) { k.mu.Lock(); k.readers[r] = true; k.mu.Unlock() }
func (k *fakeTracepoint) detach(r tpReader) { k.mu.Lock(); delete(k.readers, r); k.mu.Unlock() }

// fire makes n records on the storm page, numbered (TSC) from first on.
func (k *fakeTracepoint) fire(first, n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := first; i < first+n; i++ {
		for r := range k.readers {
			r.hit(mceEvent("", uint64(i)))
		}
	}
}

// fakeTracefs delivers every record fired while it is attached (from open
// to Close), in order. StopAfterDrain waits for gate before its last
// drain, so a test holds the overlap open as long as it likes.
type fakeTracefs struct {
	k    *fakeTracepoint
	gate chan struct{}
	kick chan struct{}
	stop chan struct{}
	once sync.Once

	mu              sync.Mutex
	buf             []fault.Event
	hits, delivered int
}

func newFakeTracefs(k *fakeTracepoint) *fakeTracefs {
	return &fakeTracefs{k: k, gate: make(chan struct{}), kick: make(chan struct{}, 1), stop: make(chan struct{})}
}

func (f *fakeTracefs) open(context.Context) (fault.EventSource, string, error) {
	f.k.attach(f) // the instance's events are enabled when it opens
	return f, "fake instance", nil
}

func (f *fakeTracefs) Name() string { return "tracefs" }

func (f *fakeTracefs) hit(ev fault.Event) {
	ev.Source = fault.SourceTraceMCE
	f.mu.Lock()
	f.buf = append(f.buf, ev)
	f.hits++
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// read sends what the buffer holds; delivered counts it once sent.
func (f *fakeTracefs) read(out chan<- fault.Event) {
	f.mu.Lock()
	evs := f.buf
	f.buf = nil
	f.mu.Unlock()
	for _, ev := range evs {
		out <- ev
	}
	f.mu.Lock()
	f.delivered += len(evs)
	f.mu.Unlock()
}

// settled says every record it took in is in the channel.
func (f *fakeTracefs) settled() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delivered == f.hits
}

func (f *fakeTracefs) Run(ctx context.Context, out chan<- fault.Event) error {
	for {
		select {
		case <-f.kick:
			f.read(out)
		case <-f.stop:
			select {
			case <-f.gate:
			case <-ctx.Done():
				return nil
			}
			f.read(out)
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

func (f *fakeTracefs) StopAfterDrain() { f.once.Do(func() { close(f.stop) }) }

// Close detaches: what fires later stays in a buffer nobody reads.
func (f *fakeTracefs) Close() error { f.k.detach(f); return nil }

// fakeEBPF sends the first limit records of a key, then counts the rest
// into an aggregate, unless held; held, it sends every record until its
// ring (ringCap records, 0 = unbounded) is full, and counts the rest.
// It delivers only when told (read), and Salvage waits for salvageGate.
type fakeEBPF struct {
	k           *fakeTracepoint
	limit       int
	ringCap     int
	cmd         chan fakeCmd
	salvageGate chan struct{}

	mu       sync.Mutex
	held     bool
	ring     []fault.Event
	perKey   map[uint64]int
	agg      map[uint64]*fakeAgg
	ringFull uint64
	heldFull uint64
}

type fakeAgg struct {
	last     fault.Event
	reported uint32
	count    uint32
}

type fakeCmd struct {
	die  bool
	done chan struct{}
}

var errRingRead = errors.New("reading the BPF ring buffer: bad address")

func newFakeEBPF(k *fakeTracepoint, limit int) *fakeEBPF {
	return &fakeEBPF{k: k, limit: limit, cmd: make(chan fakeCmd), salvageGate: make(chan struct{}),
		perKey: map[uint64]int{}, agg: map[uint64]*fakeAgg{}}
}

// open attaches the probes held, as the daemon opens the eBPF source.
func (f *fakeEBPF) open(context.Context) (fault.EventSource, string, error) {
	f.mu.Lock()
	f.held = true
	f.mu.Unlock()
	f.k.attach(f)
	return f, "fake probes", nil
}

func (f *fakeEBPF) Name() string { return "ebpf" }

func (f *fakeEBPF) hit(ev fault.Event) {
	ev.Source = fault.SourceEBPF
	key := ev.Addr >> 12
	f.mu.Lock()
	defer f.mu.Unlock()
	room := f.ringCap == 0 || len(f.ring) < f.ringCap
	if f.held {
		if room {
			f.ring = append(f.ring, ev)
			return
		}
		f.ringFull++
		f.heldFull++
	} else {
		n := f.perKey[key]
		f.perKey[key]++
		if n < f.limit && room {
			f.ring = append(f.ring, ev)
			return
		}
	}
	a := f.agg[key]
	if a == nil {
		a = &fakeAgg{}
		f.agg[key] = a
	}
	a.last = ev
	a.count++
}

// deliver sends the ring's records, then one event per key whose count
// grew since the last sweep.
func (f *fakeEBPF) deliver(ctx context.Context, out chan<- fault.Event) int {
	f.mu.Lock()
	evs := f.ring
	f.ring = nil
	for _, a := range f.agg {
		if a.count > a.reported {
			ev := a.last
			ev.Count = a.count - a.reported
			a.reported = a.count
			evs = append(evs, ev)
		}
	}
	f.mu.Unlock()
	for i, ev := range evs {
		select {
		case out <- ev:
		case <-ctx.Done():
			return i
		}
	}
	return len(evs)
}

// do asks Run to deliver (or die) and waits until it did.
func (f *fakeEBPF) do(t *testing.T, die bool) {
	t.Helper()
	c := fakeCmd{die: die, done: make(chan struct{})}
	select {
	case f.cmd <- c:
	case <-time.After(10 * time.Second):
		t.Fatal("eBPF fake not running")
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("eBPF fake did not deliver")
	}
}

func (f *fakeEBPF) Run(ctx context.Context, out chan<- fault.Event) error {
	for {
		select {
		case c := <-f.cmd:
			if c.die {
				close(c.done)
				return errRingRead
			}
			f.deliver(ctx, out)
			close(c.done)
		case <-ctx.Done():
			return nil
		}
	}
}

func (f *fakeEBPF) HoldAggregation() error {
	f.mu.Lock()
	f.held, f.heldFull = true, 0
	f.mu.Unlock()
	return nil
}

func (f *fakeEBPF) ReleaseAggregation() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = false
	return f.heldFull, nil
}

func (f *fakeEBPF) isHeld() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held
}

func (f *fakeEBPF) Salvage(ctx context.Context, out chan<- fault.Event) (int, error) {
	select {
	case <-f.salvageGate:
	case <-ctx.Done():
		return 0, nil
	}
	return f.deliver(ctx, out), nil
}

func (f *fakeEBPF) Close() error { f.k.detach(f); return nil }

// handoverRig is a source set over the fakes with a channel that never
// fills in these tests, and the main loop's count: each event that is not
// a hand-over duplicate adds its Count.
type handoverRig struct {
	*tableRig
	errors   uint64
	events   int
	dups     int
	maxCount uint32
}

func newHandoverRig(t *testing.T, ebpf, trace func(context.Context) (fault.EventSource, string, error)) *handoverRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &tableRig{out: make(chan fault.Event, 4096), clock: &fakeClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}}
	log := logrus.New()
	log.SetOutput(discard{})
	r.set = newSourceSet(ctx, r.out, []sourceDef{
		{name: "ebpf", group: groupTracepoints, open: ebpf},
		{name: "tracefs", group: groupTracepoints, open: trace},
	}, log, r.clock.now, nil)
	t.Cleanup(func() { cancel(); r.set.wait() })
	return &handoverRig{tableRig: r}
}

// observe takes what is in the channel now, as the main loop does.
func (r *handoverRig) observe() {
	for len(r.out) > 0 {
		ev := <-r.out
		if r.set.duplicate(&ev) {
			r.dups++
			continue
		}
		r.errors += uint64(ev.Count)
		r.events++
		r.maxCount = max(r.maxCount, ev.Count)
	}
}

func (r *handoverRig) waitSettled(t *testing.T, tr *fakeTracefs) {
	t.Helper()
	require.Eventually(t, tr.settled, 10*time.Second, time.Millisecond, "tracefs fake did not deliver what it took in")
}

// unavailableUntil opens with f only once ready is closed.
func unavailableUntil(ready <-chan struct{}, f func(context.Context) (fault.EventSource, string, error)) func(context.Context) (fault.EventSource, string, error) {
	return func(ctx context.Context) (fault.EventSource, string, error) {
		select {
		case <-ready:
			return f(ctx)
		default:
			return nil, "", fmt.Errorf("%w: not yet", fault.ErrUnavailable)
		}
	}
}

// eBPF arms late, in the middle of a storm on one page far above its
// aggregation limit: tracefs delivers every record one by one until it
// stood down, eBPF would count most of the same records into an
// aggregate. Held until the hand-over's overlap ends, eBPF sends each
// record on its own, so the overlap matches them one for one; released,
// it aggregates records tracefs never saw. The storm is counted exactly.
func TestHandoverInAStormCountsEachErrorOnce(t *testing.T) {
	k := newTracepoint()
	tr, bp := newFakeTracefs(k), newFakeEBPF(k, 4)
	ready := make(chan struct{})
	r := newHandoverRig(t, unavailableUntil(ready, bp.open), tr.open)
	r.set.refresh()
	require.Equal(t, "tracefs", r.set.names())

	k.fire(0, 10) // tracefs alone
	close(ready)
	r.clock.t = r.clock.t.Add(10 * time.Minute)
	r.set.refresh() // eBPF attaches; tracefs is told to drain and stop
	require.Equal(t, map[string]SourceState{"ebpf": SourceArmed, "tracefs": SourceArmed}, r.states())
	require.True(t, bp.isHeld(), "eBPF takes over with its aggregation held")

	k.fire(10, 30) // both read these
	close(tr.gate)
	r.waitChanged(t) // tracefs drained and detached
	r.waitSettled(t, tr)
	k.fire(40, 20) // eBPF alone, still held
	bp.do(t, false)
	r.observe()
	r.set.refresh()
	require.True(t, bp.isHeld(), "held while the overlap lasts")
	require.Equal(t, map[string]SourceState{"ebpf": SourceArmed, "tracefs": SourceStandby}, r.states())

	r.clock.t = r.clock.t.Add(handoverGrace)
	r.set.refresh()
	require.Nil(t, r.set.overlap, "the overlap ended")
	require.False(t, bp.isHeld(), "released with the overlap")
	k.fire(60, 40) // eBPF alone, aggregating past its limit
	bp.do(t, false)
	r.observe()

	require.EqualValues(t, 100, r.errors, "each of the storm's 100 errors counted once")
	require.EqualValues(t, 36, r.maxCount, "after the hand-over eBPF aggregates (4 sent, 36 counted)")
	require.EqualValues(t, 30, r.dups, "the 30 records both read were matched")
}

// The eBPF source dies while reading, in a storm: records it holds in its
// ring buffer, counts it did not sweep yet, and records fired before
// tracefs arms are delivered by salvaging it after tracefs armed; records
// both read meanwhile are matched (its aggregation held from its death).
// The storm is counted exactly.
func TestEBPFDeathMidReadLosesNothing(t *testing.T) {
	k := newTracepoint()
	tr, bp := newFakeTracefs(k), newFakeEBPF(k, 4)
	r := newHandoverRig(t, bp.open, tr.open)
	r.set.refresh()
	require.Equal(t, map[string]SourceState{"ebpf": SourceArmed, "tracefs": SourceStandby}, r.states())
	require.False(t, bp.isHeld(), "no hand-over: released at once")

	k.fire(0, 20) // 4 sent, 16 counted
	bp.do(t, false)
	r.observe()
	require.EqualValues(t, 20, r.errors)

	k.fire(20, 10) // in flight: counted in the kernel, not swept
	bp.do(t, true) // Run fails
	r.waitChanged(t)
	require.True(t, bp.isHeld(), "held from its death")
	k.fire(30, 5) // before tracefs arms: eBPF alone

	r.set.refresh() // tracefs arms, then the dead source is salvaged
	require.Equal(t, map[string]SourceState{"ebpf": SourceBroken, "tracefs": SourceArmed}, r.states())
	k.fire(35, 15) // both read these
	close(bp.salvageGate)
	r.waitChanged(t) // salvaged and closed
	k.fire(50, 10)   // tracefs alone
	r.waitSettled(t, tr)
	r.observe()

	require.EqualValues(t, 60, r.errors, "each of the storm's 60 errors counted once, the 15 in flight at its death included")
	require.EqualValues(t, 15, r.dups, "the 15 records both read were matched")
	r.clock.t = r.clock.t.Add(handoverGrace)
	r.set.refresh()
	require.Nil(t, r.set.overlap)
}

// A record that finds the held eBPF ring buffer full is counted in the
// kernel (not lost) but cannot be matched: the release reports how many
// there were, and that is exactly what the hand-over over-counts.
func TestHandoverRingFullWhileHeldIsReported(t *testing.T) {
	k := newTracepoint()
	tr, bp := newFakeTracefs(k), newFakeEBPF(k, 4)
	bp.ringCap = 8
	ready := make(chan struct{})
	r := newHandoverRig(t, unavailableUntil(ready, bp.open), tr.open)
	r.set.refresh()
	close(ready)
	r.clock.t = r.clock.t.Add(10 * time.Minute)
	r.set.refresh()
	k.fire(0, 10) // both: 8 fit the ring, 2 are counted
	close(tr.gate)
	r.waitChanged(t)
	r.waitSettled(t, tr)
	bp.do(t, false)
	r.observe()
	n, err := bp.ReleaseAggregation()
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	require.EqualValues(t, 10+n, r.errors, "over-counted by what the release reports, no more")
}

// With overlapFor (the kernel suite's --test-handover-after), the
// fallback keeps reading, its records matched, until that long after the
// preferred source armed, and is told to stand down only then.
func TestHandoverWaitsOverlapFor(t *testing.T) {
	k := newTracepoint()
	tr, bp := newFakeTracefs(k), newFakeEBPF(k, 4)
	ready := make(chan struct{})
	r := newHandoverRig(t, unavailableUntil(ready, bp.open), tr.open)
	r.set.overlapFor = 2 * time.Second
	r.set.refresh()
	close(ready)
	r.clock.t = r.clock.t.Add(10 * time.Minute)
	r.set.refresh()
	require.NotNil(t, r.set.overlap, "matching from the moment eBPF armed")
	r.clock.t = r.clock.t.Add(time.Second)
	r.set.refresh()
	select {
	case <-tr.stop:
		t.Fatal("tracefs told to stand down before overlapFor passed")
	default:
	}
	k.fire(0, 10) // both read these
	r.clock.t = r.clock.t.Add(time.Second)
	r.set.refresh()
	select {
	case <-tr.stop:
	default:
		t.Fatal("tracefs not told to stand down once overlapFor passed")
	}
	close(tr.gate)
	r.waitChanged(t)
	r.waitSettled(t, tr)
	bp.do(t, false)
	r.observe()
	require.EqualValues(t, 10, r.errors)
	require.Equal(t, 10, r.dups)
}
