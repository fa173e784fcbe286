package replay

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/store"
)

// TestStoreImport writes a daemon history the way the daemon does (every
// record as it came): two corrected errors on page 0x2d94 from
// mce_record, the second also as an mc_event a second later (one error,
// two views), and five L1 errors on CPU 3. Replayed through count-once,
// the policy sees 7 errors, retires the page and offlines CPU 3 with its
// sibling 35.
func TestStoreImport(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, StoreFile))
	require.NoError(t, err)
	mem := func(src fault.Source, at time.Time, label string) fault.Event {
		ev := fault.NewEvent(src, at)
		ev.Class, ev.Severity = fault.ClassMemory, fault.SeverityCorrected
		ev.PhysAddr, ev.AddrValid, ev.AddrLSB = 0x2d94040, true, 12
		if label != "" {
			ev.MC, ev.DIMMLabel = 0, label
		}
		return ev
	}
	evs := []fault.Event{
		mem(fault.SourceTraceMCE, t0, ""),
		mem(fault.SourceTraceMCE, t0.Add(time.Hour), ""),
		mem(fault.SourceTraceMC, t0.Add(time.Hour+time.Second), "DIMM_B2"),
	}
	for i := 0; i < 5; i++ {
		ev := fault.NewEvent(fault.SourceTraceMCE, t0.Add(2*time.Hour+time.Duration(i)*time.Minute))
		ev.Class, ev.Severity, ev.CPU, ev.Bank, ev.CacheLevel, ev.CoreBank = fault.ClassCache, fault.SeverityCorrected, 3, 1, 1, true
		evs = append(evs, ev)
	}
	require.NoError(t, st.AddEvents(evs))
	require.NoError(t, st.Close())

	recs, err := ReadStore(dir, "node7")
	require.NoError(t, err)
	require.Len(t, recs, 8)
	r, err := New(defaultHost, builtin(t, "selfprotect")...)
	require.NoError(t, err)
	require.NoError(t, r.AddRaw(dir, recs))
	p := r.Report().Policies[0]
	require.EqualValues(t, 7, p.EventsSeen)
	require.Equal(t, map[string]int{"page": 1, "cpu": 1}, p.Cases)
	require.EqualValues(t, 1, p.PagesRetired)
	require.EqualValues(t, 2, p.CPUsOffline)

	_, err = ReadStore(t.TempDir(), "x")
	require.ErrorIs(t, err, store.ErrNotFound)
}
