package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func TestEventRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		ev   fault.Event
	}{
		{"memory with registers above 2^63", memoryEvent(at(0), 0x2d94abc)},
		{"cache, unknown ids, zero recorded time", cacheEvent(at(time.Second), 5)},
		{"address above 2^63", func() fault.Event {
			e := memoryEvent(at(2*time.Second), 0xfffffffffffff000)
			return e
		}()},
		{"all unknown", fault.NewEvent(fault.SourceSimulation, at(3*time.Second))},
	}
	s, _ := openTemp(t)
	var want []fault.Event
	for _, tt := range tests {
		want = append(want, tt.ev)
	}
	require.NoError(t, s.AddEvents(want))
	got, err := s.Events(EventQuery{})
	require.NoError(t, err)
	require.Len(t, got, len(tests))
	for i, tt := range tests {
		require.Equal(t, tt.ev, got[i], tt.name)
	}
	require.Equal(t, uint64(0x9c00000000000090), got[0].Status)
}

func TestEventsQuery(t *testing.T) {
	s, _ := openTemp(t)
	page := memoryEvent(at(0), 0x2d94010)
	samePage := memoryEvent(at(time.Minute), 0x2d94ff8)
	nextPage := memoryEvent(at(2*time.Minute), 0x2d95000)
	otherDIMM := memoryEvent(at(3*time.Minute), 0x1000)
	otherDIMM.MC, otherDIMM.DIMMLabel, otherDIMM.Row = 1, "DIMM_B1", "mc1/csrow0/row7"
	noAddr := memoryEvent(at(4*time.Minute), 0x2d94020)
	noAddr.AddrValid = false
	cpu5 := cacheEvent(at(5*time.Minute), 5)
	cpu6 := cacheEvent(at(6*time.Minute), 6)
	cpu6.Socket = 0
	all := []fault.Event{page, samePage, nextPage, otherDIMM, noAddr, cpu5, cpu6}
	require.NoError(t, s.AddEvents(all))

	tests := []struct {
		name string
		q    EventQuery
		want []fault.Event
	}{
		{"everything", EventQuery{}, all},
		{"since is inclusive", EventQuery{Since: at(5 * time.Minute)}, []fault.Event{cpu5, cpu6}},
		{"limit keeps the newest, oldest first", EventQuery{Limit: 2}, []fault.Event{cpu5, cpu6}},
		{"class", EventQuery{Class: "cache"}, []fault.Event{cpu5, cpu6}},
		{"class and limit", EventQuery{Class: "memory", Limit: 1}, []fault.Event{noAddr}},
		{"cpu", EventQuery{Resource: fault.CPU(5)}, []fault.Event{cpu5}},
		{"page covers its 4 KiB, only valid addresses", EventQuery{Resource: fault.Page(0x2d94)}, []fault.Event{page, samePage}},
		{"page above 2^63", EventQuery{Resource: fault.Page(0x8000000000000)}, nil},
		{"dimm", EventQuery{Resource: fault.DIMM(1, "DIMM_B1")}, []fault.Event{otherDIMM}},
		{"row", EventQuery{Resource: fault.Row("mc0/csrow3/row1234")}, []fault.Event{page, samePage, nextPage, noAddr}},
		{"socket", EventQuery{Resource: fault.Socket(1)}, []fault.Event{cpu5}},
		{"machine", EventQuery{Resource: fault.Machine, Since: at(6 * time.Minute)}, []fault.Event{cpu6}},
		{"nothing", EventQuery{Since: at(time.Hour)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Events(tt.q)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestEventsQueryErrors(t *testing.T) {
	s, _ := openTemp(t)
	tests := []struct {
		name string
		q    EventQuery
		want string
	}{
		{"unknown class", EventQuery{Class: "dram"}, `unknown error class "dram"`},
		{"bad resource", EventQuery{Resource: "gpu:0"}, "unknown kind"},
		{"bad cpu", EventQuery{Resource: "cpu:x"}, "bad CPU number"},
		{"bad socket", EventQuery{Resource: "socket:x"}, "bad socket number"},
		{"bad dimm", EventQuery{Resource: "dimm:zero/A1"}, "want dimm:mcN/LABEL"},
		{"pfn beyond 64 bits", EventQuery{Resource: "page:0xffffffffffffffff"}, "beyond 64-bit"},
		{"negative limit", EventQuery{Limit: -1}, "negative limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Events(tt.q)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestPruneEvents(t *testing.T) {
	s, _ := openTemp(t)
	var evs []fault.Event
	for i := range 10 {
		evs = append(evs, cacheEvent(at(time.Duration(i)*time.Hour), i))
	}
	require.NoError(t, s.AddEvents(evs))
	n, err := s.PruneEvents(at(4 * time.Hour))
	require.NoError(t, err)
	require.Equal(t, int64(4), n)
	left, err := s.Events(EventQuery{})
	require.NoError(t, err)
	require.Equal(t, evs[4:], left)
	n, err = s.PruneEvents(at(4 * time.Hour))
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestAddEventsEmpty(t *testing.T) {
	s, _ := openTemp(t)
	require.NoError(t, s.AddEvents(nil))
}

// A storm: one batch of 100 000 events goes in one transaction and the
// history reads back complete.
func TestAddEventsStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("storm")
	}
	s, _ := openTemp(t)
	evs := make([]fault.Event, 100_000)
	for i := range evs {
		evs[i] = memoryEvent(at(time.Duration(i)*time.Microsecond), uint64(i)*fault.PageSize)
	}
	require.NoError(t, s.AddEvents(evs))
	var n int
	require.NoError(t, s.r.QueryRow(`SELECT count(*) FROM events`).Scan(&n))
	require.Equal(t, len(evs), n)
}

// BenchmarkAddEvents: a storm's batches (1000) and the daemon's usual ones
// (a few events per flush, and the one it syncs before a decision).
func BenchmarkAddEvents(b *testing.B) {
	for _, batch := range []int{1, 5, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchmarkAddEvents(b, batch) })
	}
}

func benchmarkAddEvents(b *testing.B, batch int) {
	s, _ := openTemp(b)
	evs := make([]fault.Event, batch)
	for i := range evs {
		evs[i] = memoryEvent(t0, uint64(i)*fault.PageSize)
	}
	b.ResetTimer()
	next := t0
	for b.Loop() {
		// Time moves forward as in a real storm, so the received index
		// grows at its end.
		for i := range evs {
			evs[i].Received = next
			next = next.Add(time.Microsecond)
		}
		if err := s.AddEvents(evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}

// EachEvent streams what Events returns, in the same (oldest-first)
// order, over a history larger than any one batch; fn's error stops it.
func TestEachEventStreams(t *testing.T) {
	s, _ := openTemp(t)
	const n = 5000
	evs := make([]fault.Event, 0, n)
	for i := 0; i < n; i++ {
		// Two events share each receive time: id breaks the tie.
		evs = append(evs, memoryEvent(at(time.Duration(i/2)*time.Millisecond), uint64(0x100000+i)<<12))
	}
	require.NoError(t, s.AddEvents(evs))
	for _, tc := range []struct {
		name string
		q    EventQuery
	}{
		{"all", EventQuery{}},
		{"since", EventQuery{Since: at(time.Second)}},
		{"class", EventQuery{Class: "memory", Since: at(2 * time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := s.Events(tc.q)
			require.NoError(t, err)
			require.NotEmpty(t, want)
			var got []fault.Event
			require.NoError(t, s.EachEvent(tc.q, func(e fault.Event) error {
				got = append(got, e)
				return nil
			}))
			require.Equal(t, want, got)
		})
	}

	stop := errors.New("enough")
	seen := 0
	err := s.EachEvent(EventQuery{}, func(fault.Event) error {
		seen++
		if seen == 10 {
			return stop
		}
		return nil
	})
	require.ErrorIs(t, err, stop)
	require.Equal(t, 10, seen)
	require.Error(t, s.EachEvent(EventQuery{Limit: 5}, func(fault.Event) error { return nil }), "a limit is refused")
}
