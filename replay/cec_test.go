package replay

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func memCE(pfn uint64, at time.Time) *fault.Event {
	ev := fault.NewEvent(fault.SourceTraceMCE, at)
	ev.Class, ev.Severity = fault.ClassMemory, fault.SeverityCorrected
	ev.PhysAddr, ev.AddrValid, ev.AddrLSB = pfn*fault.PageSize, true, 6
	return &ev
}

func TestCECThreshold(t *testing.T) {
	c := newCEC(2, day)
	require.Empty(t, c.Observe(memCE(7, t0)))
	d := c.Observe(memCE(7, t0.Add(time.Hour)))
	require.Len(t, d, 1)
	require.Equal(t, []fault.Resource{fault.Page(7)}, d[0].Targets)
	require.Empty(t, c.entries, "the offlined page's entry is deleted")

	// Counts never decay: two errors 10 days apart still trip.
	require.Empty(t, c.Observe(memCE(8, t0.Add(2*time.Hour))))
	require.Len(t, c.Observe(memCE(8, t0.Add(240*time.Hour))), 1)
}

// TestCECEvictsOwnHistory fills the 512 entries with one error each. A
// spring cleaning every 128 insertions leaves the first 256 pages at
// generation 0, so the next error, even on page 0 itself, first evicts the
// lowest (generation, count) entry — page 0 — and page 0 starts again at
// one error: with threshold 2 it does not trip, as it would with room.
func TestCECEvictsOwnHistory(t *testing.T) {
	c := newCEC(2, day)
	for p := uint64(0); p < cecMaxEntries; p++ {
		require.Empty(t, c.Observe(memCE(p, t0)))
	}
	require.Len(t, c.entries, cecMaxEntries)
	require.EqualValues(t, 0, c.entries[0].gen)
	require.EqualValues(t, 0, c.entries[255].gen)
	require.EqualValues(t, 1, c.entries[256].gen)
	require.EqualValues(t, 2, c.entries[511].gen)

	require.Empty(t, c.Observe(memCE(0, t0)), "page 0 lost its first error to eviction")
	require.Len(t, c.entries, cecMaxEntries)
	require.Len(t, c.Observe(memCE(0, t0)), 1, "now it has two")

	// The timer decays too: a day later every generation drops by one.
	c2 := newCEC(1023, day)
	c2.Observe(memCE(1, t0))
	c2.Observe(memCE(2, t0.Add(25*time.Hour)))
	require.EqualValues(t, 2, c2.entries[0].gen, "page 1 aged by the daily cleaning")
	require.EqualValues(t, 3, c2.entries[1].gen)
}

func TestCECIgnoresOtherErrors(t *testing.T) {
	c := newCEC(1, day)
	ue := memCE(1, t0)
	ue.Severity = fault.SeverityUncorrectedRecoverable
	require.Empty(t, c.Observe(ue))
	coarse := memCE(1, t0)
	coarse.AddrLSB = 20
	require.Empty(t, c.Observe(coarse))
	poll := memCE(1, t0)
	poll.Source = fault.SourceEDACPoll
	require.Empty(t, c.Observe(poll))
	require.Len(t, c.Observe(memCE(1, t0)), 1)
}
