package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// A snapshot reads the history as committed when it was taken, whatever
// the writer stores or prunes after: the boundary of a rebuild that reads
// beside the intake.
func TestEventSnapshot(t *testing.T) {
	page := func(i int) uint64 { return uint64(0x100000+i) << 12 }
	for _, tc := range []struct {
		name     string
		before   int           // events stored before the snapshot
		after    int           // events stored after it
		prune    time.Duration // prune what was received before at(prune), after the snapshot; 0 = none
		since    time.Duration // the query's Since, from t0; 0 = none
		wantMark int64
		want     []int // indexes of the events the snapshot yields
	}{
		{name: "empty", after: 2, wantMark: 0},
		{name: "later stores unseen", before: 3, after: 2, wantMark: 3, want: []int{0, 1, 2}},
		{name: "later prune unseen", before: 3, after: 1, prune: 2 * time.Second, wantMark: 3, want: []int{0, 1, 2}},
		{name: "since", before: 4, after: 1, since: 2 * time.Second, wantMark: 4, want: []int{2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openTemp(t)
			ev := func(i int) fault.Event { return memoryEvent(at(time.Duration(i)*time.Second), page(i)) }
			for i := range tc.before {
				require.NoError(t, s.AddEvents([]fault.Event{ev(i)}))
			}
			snap, err := s.SnapshotEvents(context.Background())
			require.NoError(t, err)
			defer snap.Close()
			require.Equal(t, tc.wantMark, snap.Mark)
			for i := tc.before; i < tc.before+tc.after; i++ {
				require.NoError(t, s.AddEvents([]fault.Event{ev(i)}))
			}
			if tc.prune > 0 {
				n, err := s.PruneEvents(at(tc.prune))
				require.NoError(t, err)
				require.NotZero(t, n)
			}
			q := EventQuery{}
			if tc.since > 0 {
				q.Since = at(tc.since)
			}
			var got []fault.Event
			require.NoError(t, snap.Each(context.Background(), q, func(e fault.Event) error {
				got = append(got, e)
				return nil
			}))
			var want []fault.Event
			for _, i := range tc.want {
				want = append(want, ev(i))
			}
			require.Equal(t, want, got)
			require.NoError(t, snap.Close())
			require.NoError(t, snap.Close(), "a second Close is harmless")
		})
	}
}

// Ending the snapshot's context stops a walk through it: a daemon that
// stops during a rebuild does not wait for the whole history.
func TestEventSnapshotCancel(t *testing.T) {
	s, _ := openTemp(t)
	evs := make([]fault.Event, 0, 1000)
	for i := range cap(evs) {
		evs = append(evs, memoryEvent(at(time.Duration(i)*time.Millisecond), uint64(0x100000+i)<<12))
	}
	require.NoError(t, s.AddEvents(evs))
	ctx, cancel := context.WithCancel(context.Background())
	snap, err := s.SnapshotEvents(ctx)
	require.NoError(t, err)
	seen := 0
	err = snap.Each(ctx, EventQuery{}, func(fault.Event) error {
		seen++
		if seen == 10 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, seen, len(evs))
	require.NoError(t, snap.Close(), "closing after the context ended")
	// The store is still whole for the next reader.
	n := 0
	require.NoError(t, s.EachEvent(EventQuery{}, func(fault.Event) error { n++; return nil }))
	require.Equal(t, len(evs), n)
}
