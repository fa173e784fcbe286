package policy

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// A page query walks the log's index and reads only the events on its
// page: it must list what reading every event and matching it lists, as
// the log grows, wraps and holds events without a usable page (among them
// page frame 0, which the index writes as 1).
func TestPageQueryListsWhatReadingEveryEventLists(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const window = 10 * time.Second
	for round := range 200 {
		l := newEvidenceLog()
		var pushed []uint32
		n := 1 + rng.IntN(3*evidenceLogSize)
		at := time.Duration(0)
		for range n {
			at += time.Duration(rng.IntN(40)) * time.Millisecond
			ev := fault.NewEvent(fault.SourceTraceMCE, t0.Add(at))
			ev.Class, ev.Count = fault.ClassMemory, 1
			ev.PhysAddr = uint64(rng.IntN(4))<<12 | 0x40
			ev.AddrValid = rng.IntN(8) != 0
			ev.AddrLSB = 12
			if rng.IntN(8) == 0 {
				ev.AddrLSB = 21 // a 2 MiB granule: no page
			}
			pushed = append(pushed, l.push(&ev, int64(at)))
		}
		newest := pushed[len(pushed)-1-rng.IntN(min(len(pushed), 50))]
		refs := []evidenceRef{{seq: newest}}
		standIn := func(evidenceRef) fault.Evidence { t.Fatal("no ref left the log"); return fault.Evidence{} }
		limit := 1 + rng.IntN(40)
		for pfn := range uint64(4) {
			byIndex := l.collect(refs, limit, onPage(pfn, window), standIn)
			byReading := l.collect(refs, limit, evidenceQuery{window: window, match: func(x *fault.Event) bool { return usablePage(x) && x.PFN() == pfn }}, standIn)
			require.Equal(t, byReading, byIndex, "round %d, page %d, %d events, newest %d", round, pfn, n, newest)
		}
	}
}

// The walk stops at the window's edge and at the limit, and lists oldest
// first.
func TestPageQueryStopsAtTheWindowAndTheLimit(t *testing.T) {
	l := newEvidenceLog()
	var seqs []uint32
	for i, off := range []time.Duration{0, 5 * time.Second, 11 * time.Second, 12 * time.Second, 13 * time.Second, 14 * time.Second} {
		ev := fault.NewEvent(fault.SourceTraceMCE, t0.Add(off))
		ev.Class, ev.Count, ev.AddrValid, ev.AddrLSB = fault.ClassMemory, 1, true, 12
		ev.PhysAddr = 0x2d94 << 12
		if i == 4 {
			ev.PhysAddr = 0x1000 << 12 // another page
		}
		seqs = append(seqs, l.push(&ev, int64(off)))
	}
	refs := []evidenceRef{{seq: seqs[5]}}
	got := l.collect(refs, 10, onPage(0x2d94, 10*time.Second), nil)
	require.Len(t, got, 4, "the events of 5 s to 14 s on the page; 0 s is past the window")
	require.Equal(t, t0.Add(5*time.Second), got[0].Time)
	require.Equal(t, t0.Add(14*time.Second), got[3].Time)
	got = l.collect(refs, 2, onPage(0x2d94, 10*time.Second), nil)
	require.Len(t, got, 2)
	require.Equal(t, t0.Add(12*time.Second), got[0].Time, "the most recent ones")
}
