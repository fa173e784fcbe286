package policy

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// refSERD is the definition, kept naively: every (time, count) in a list.
type refSERD struct {
	threshold uint64
	window    int64
	events    map[int][]refEvent
}

type refEvent struct {
	at int64
	n  uint64
}

// add returns the errors in the window after adding, without tripping.
func (r *refSERD) add(k int, at int64, n uint64) uint64 {
	kept := r.events[k][:0]
	var sum uint64
	for _, e := range r.events[k] {
		if e.at > at-r.window {
			kept = append(kept, e)
			sum += e.n
		}
	}
	r.events[k] = append(kept, refEvent{at, n})
	return sum + n
}

// TestSERDMatchesDefinition: with enough slots the table trips exactly when
// the N-th error lands within T of the first one still in the window.
func TestSERDMatchesDefinition(t *testing.T) {
	for _, threshold := range []int{1, 2, 3, 5, 17} {
		rng := rand.New(rand.NewPCG(1, uint64(threshold)))
		window := time.Hour
		table := newSERD[int](threshold, window, 64, 1000, nil)
		ref := &refSERD{threshold: uint64(threshold), window: int64(window), events: map[int][]refEvent{}}
		now := int64(0)
		trips := 0
		for i := 0; i < 20000; i++ {
			now += rng.Int64N(int64(window) / int64(2*threshold))
			k := rng.IntN(4)
			n := uint32(1 + rng.IntN(2))
			tripped, level, _ := table.add(k, now, n, 0, nil)
			want := ref.add(k, now, uint64(n))
			require.Equal(t, want >= uint64(threshold), tripped, "threshold %d event %d", threshold, i)
			require.Equal(t, want, level)
			if tripped {
				trips++
				delete(ref.events, k)
			}
		}
		require.Positive(t, trips)
	}
}

// TestSERDMergingNeverTripsEarly: with fewer slots than N-1 the table
// merges, and may trip late but never on fewer than N errors within T.
func TestSERDMergingNeverTripsEarly(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const threshold = 20
	window := time.Hour
	table := newSERD[int](threshold, window, 4, 1000, nil)
	require.Equal(t, 4, table.slots)
	ref := &refSERD{threshold: threshold, window: int64(window), events: map[int][]refEvent{}}
	now := int64(0)
	trips := 0
	for i := 0; i < 50000; i++ {
		now += rng.Int64N(int64(time.Minute))
		k := rng.IntN(3)
		tripped, _, _ := table.add(k, now, 1, 0, nil)
		inWindow := ref.add(k, now, 1)
		if tripped {
			require.GreaterOrEqual(t, inWindow, uint64(threshold), "event %d", i)
			trips++
			delete(ref.events, k)
		}
	}
	require.Positive(t, trips)
}

func TestSERDEvidenceOrder(t *testing.T) {
	table := newSERD[int](3, time.Hour, 4, 10, nil)
	_, _, ev := table.add(1, 10, 1, 101, nil)
	require.Empty(t, ev)
	_, _, ev = table.add(1, 20, 1, 102, nil)
	require.Empty(t, ev)
	tripped, _, ev := table.add(1, 30, 1, 103, nil)
	require.True(t, tripped)
	require.Equal(t, []evidenceRef{{seq: 101, at: 10, n: 1}, {seq: 102, at: 20, n: 1}, {seq: 103, at: 30, n: 1}}, ev)
	require.Zero(t, table.keys.len(), "a tripped key is forgotten")
}

func TestLRUReusesSlots(t *testing.T) {
	table := newSERD[uint64](2, time.Second, 4, 3, nil)
	for i := uint64(0); i < 100; i++ {
		table.add(i, int64(i), 1, 0, nil)
	}
	require.Equal(t, 3, table.keys.len())
	require.Len(t, table.used, 3, "evicted slots are reused, the slices do not grow")
	require.Equal(t, uint64(97), table.keys.evicted)
	for i := uint64(97); i < 100; i++ {
		_, ok := table.keys.lookup(i)
		require.True(t, ok, "the most recent keys survive")
	}
}

func TestDistinctPages(t *testing.T) {
	table := newDistinct[string](3, time.Hour, 10)
	tripped, n, _, _ := table.add("r", 1, 0, 1, nil)
	require.False(t, tripped)
	require.Equal(t, 1, n)
	tripped, n, _, _ = table.add("r", 1, 1, 2, nil)
	require.False(t, tripped, "the same page twice is one page")
	require.Equal(t, 1, n)
	tripped, _, _, _ = table.add("r", 2, int64(time.Hour), 3, nil)
	require.False(t, tripped)
	require.Equal(t, 2, table.level("r", int64(time.Hour)))
	require.Equal(t, 1, table.level("r", int64(time.Hour)+1), "the window is half-open")
	tripped, _, _, _ = table.add("r", 3, int64(time.Hour)+2, 4, nil)
	require.False(t, tripped, "page 1 left the window")
	tripped, _, pages, ev := table.add("r", 4, int64(time.Hour)+3, 5, nil)
	require.True(t, tripped)
	require.Equal(t, []uint64{2, 3, 4}, pages)
	require.Equal(t, []evidenceRef{
		{seq: 3, at: int64(time.Hour), n: 1, pfn: 2},
		{seq: 4, at: int64(time.Hour) + 2, n: 1, pfn: 3},
		{seq: 5, at: int64(time.Hour) + 3, n: 1, pfn: 4},
	}, ev)
}

func TestRateWindow(t *testing.T) {
	w := newRateWindow(10 * time.Second)
	for i := 0; i < 100; i++ {
		w.add(int64(i)*int64(100*time.Millisecond), 1)
	}
	require.Equal(t, uint64(100), w.sum(int64(9900*time.Millisecond)))
	// Between 19/20 and all of the window is summed: at 15 s the buckets
	// from 5.5 s on.
	require.Equal(t, uint64(45), w.sum(int64(15*time.Second)))
	require.Zero(t, w.sum(int64(30*time.Second)))
	w.add(-int64(time.Second), 5) // before the epoch, older than the window now
	require.Zero(t, w.sum(int64(30*time.Second)))
}
