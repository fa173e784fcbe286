package daemon

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/store"
)

// sweepSource counts SweepNow calls.
type sweepSource struct {
	fakeSource
	swept atomic.Int32
}

func (s *sweepSource) SweepNow() { s.swept.Add(1) }

// The busy tick asks every armed source that aggregates to sweep; a
// standby one and one that cannot sweep are left alone.
func TestBusyTickSweepsArmedSources(t *testing.T) {
	d := quietDaemon(t)
	armed, standby := &sweepSource{}, &sweepSource{}
	d.sources = &sourceSet{entries: []*sourceEntry{
		{state: SourceArmed, src: armed},
		{state: SourceStandby, src: standby},
		{state: SourceArmed, src: &fakeSource{}},
	}}
	d.busyTick()
	d.busyTick()
	require.EqualValues(t, 2, armed.swept.Load())
	require.Zero(t, standby.swept.Load())
	var none *sourceSet
	none.sweepNow() // no sources yet: nothing to do, no panic
}

func historyEvent(i int) fault.Event {
	ev := fault.NewEvent(fault.SourceEBPF, time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Millisecond))
	ev.Class, ev.Severity, ev.CPU = fault.ClassMemory, fault.SeverityCorrected, i
	return ev
}

func storedEvents(t *testing.T, d *Daemon) int {
	t.Helper()
	got, err := d.store.Events(store.EventQuery{})
	require.NoError(t, err)
	return len(got)
}

// While storming the history writer has no timer of its own: the busy
// tick asks it to write, and it writes (events sent before the ask
// included) once the oldest it holds has waited historyFlushStorm.
func TestStormHistoryWrittenByTheTick(t *testing.T) {
	d := quietDaemon(t)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC).UnixNano())
	d.now = func() time.Time { return time.Unix(0, clock.Load()) }
	d.storming.Store(true)
	q := make(chan fault.Event, 16)
	go d.storeEvents(q)
	t.Cleanup(func() { close(q); <-d.storeDone })
	// ask sends a flush request and returns once the writer has handled
	// it: it took a second one, which it can only do after the first.
	ask := func() {
		t.Helper()
		d.flushHistory()
		require.Eventually(t, func() bool { return len(d.flushQ) == 0 }, time.Minute, time.Millisecond)
		d.flushHistory()
		require.Eventually(t, func() bool { return len(d.flushQ) == 0 }, time.Minute, time.Millisecond)
	}

	for round := 1; round <= 3; round++ {
		for i := range 3 {
			q <- historyEvent(10*round + i)
		}
		for range 4 {
			ask()
			clock.Add(int64(time.Second))
		}
		require.Zero(t, storedEvents(t, d)-3*(round-1), "round %d: a tick before the batch waited %v writes nothing", round, historyFlushStorm)
		clock.Add(int64(time.Second))
		d.flushHistory()
		require.Eventually(t, func() bool { return d.counters.stored.Load() == uint64(3*round) }, time.Minute, time.Millisecond)
		require.Equal(t, 3*round, storedEvents(t, d))
	}

	// Calm again: a request writes at once.
	d.storming.Store(false)
	q <- historyEvent(99)
	d.flushHistory()
	require.Eventually(t, func() bool { return d.counters.stored.Load() == 10 }, time.Minute, time.Millisecond)
}

// When the busy ticker goes off (the storm ended between ticks), the
// writer is asked once more: a batch it took while storming has no timer.
func TestBusyOffAsksForTheLastWrite(t *testing.T) {
	d := quietDaemon(t)
	busy := newOnDemand(time.Hour)
	defer busy.stop()
	d.setBusy(busy)
	require.False(t, busy.on)
	require.Empty(t, d.flushQ, "off and staying off: nothing to ask")

	d.storming.Store(true)
	d.setBusy(busy)
	require.True(t, busy.on)
	require.Empty(t, d.flushQ)

	d.storming.Store(false)
	d.setBusy(busy)
	require.False(t, busy.on)
	require.Len(t, d.flushQ, 1, "going off asks for a write")
}

// A flush request with nothing held costs no write, and the writer stops
// when its queue closes even with a request pending.
func TestHistoryFlushRequestWhenEmpty(t *testing.T) {
	d := quietDaemon(t)
	q := make(chan fault.Event)
	go d.storeEvents(q)
	d.flushHistory()
	d.flushHistory() // a pending request covers this one: never blocks
	close(q)
	select {
	case <-d.storeDone:
	case <-time.After(time.Minute):
		t.Fatal("the writer did not stop")
	}
	require.Zero(t, d.counters.stored.Load())
}
