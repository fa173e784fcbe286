package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// TestObserveParts: a record of an error already counted feeds only the
// rules keyed on what it adds, so the page, storm and DIMM rules each see
// every error once whichever record brought which facet.
func TestObserveParts(t *testing.T) {
	cfg := Defaults()
	cfg.Rules.DIMM.Errors = 3
	cfg.Rules.DIMM.DistinctPages = 100
	e := NewEngine(cfg)
	labelled := func(ev *fault.Event) *fault.Event {
		ev.Source, ev.MC, ev.DIMMLabel = fault.SourceTraceMC, 0, "DIMM_A1"
		return ev
	}
	// Three errors on three pages: each counted from mce_record (page,
	// no label), then its mc_event adds the label only.
	for i := range 3 {
		at := time.Duration(i) * time.Second
		require.Empty(t, e.ObserveParts(memCE(at, uint64(0x100+i)), Parts{Error: true, Page: true}))
		got := e.ObserveParts(labelled(memCE(at+time.Millisecond, uint64(0x100+i))), Parts{DIMM: true})
		if i < 2 {
			require.Empty(t, got, "error %d", i)
			continue
		}
		require.Len(t, got, 1)
		require.Equal(t, fault.DiagReplaceDIMM, got[0].Case.Diagnosis)
		require.Contains(t, got[0].Case.Summary, "3 errors")
	}
	// A page-only part (the label was counted before) still feeds the page
	// rule: two of them trip it, and nothing counts the errors twice.
	require.Empty(t, e.ObserveParts(memCE(10*time.Second, 0x200), Parts{Page: true}))
	got := e.ObserveParts(memCE(11*time.Second, 0x200), Parts{Page: true})
	require.Len(t, got, 1)
	require.Equal(t, fault.DiagSoftOfflinePage, got[0].Case.Diagnosis)
	require.Equal(t, uint64(3), e.events, "only the Error parts are errors")
}

func TestDIMMLocationWithoutController(t *testing.T) {
	cfg := Defaults()
	cfg.Rules.DIMM.Errors = 2
	e := NewEngine(cfg)
	ev := memCE(0, 0x10)
	ev.DIMMLabel, ev.LocatedBy = "socket 0 UMC 2", fault.LocatedByMCA
	require.Empty(t, e.Observe(ev))
	ev = memCE(time.Second, 0x11)
	ev.DIMMLabel, ev.LocatedBy = "socket 0 UMC 2", fault.LocatedByMCA
	got := e.Observe(ev)
	require.Len(t, got, 1)
	require.Equal(t, fault.Resource("dimm:socket 0 UMC 2"), got[0].Case.Suspect)
	require.Contains(t, got[0].Case.Summary, "located by MCA record only")
	k, ok := parseDIMM(got[0].Case.Suspect)
	require.True(t, ok)
	require.Equal(t, dimmKey{mc: fault.Unknown, label: "socket 0 UMC 2"}, k)
}
