package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// Errors per DIMM keep at most maxDIMMLocations series; later locations
// count in the overflow, known ones keep counting.
func TestFleetDIMMLocationsCapped(t *testing.T) {
	f := newFleet()
	ev := func(mc int, label string, count uint32) *fault.Event {
		e := fault.NewEvent(fault.SourceTraceMC, time.Unix(0, 0))
		e.MC, e.DIMMLabel, e.Count = mc, label, count
		return &e
	}
	for i := 0; i < maxDIMMLocations+10; i++ {
		f.dimm(ev(0, fmt.Sprintf("DIMM_%d", i), 2))
	}
	f.dimm(ev(0, "DIMM_0", 3))  // listed: still counted under its name
	f.dimm(ev(-1, "P0_CH1", 0)) // no controller, a zero count is one error
	f.dimm(ev(0, "", 5))        // no DIMM: not a location
	s := f.snapshot()
	require.Len(t, s.dimmErrors, maxDIMMLocations)
	require.Equal(t, uint64(5), s.dimmErrors[dimmLocation{0, "DIMM_0"}])
	require.Equal(t, uint64(10*2+1), s.dimmOverflow)
	require.Equal(t, "mc0/DIMM_0", dimmLocation{0, "DIMM_0"}.String())
	require.Equal(t, "P0_CH1", dimmLocation{-1, "P0_CH1"}.String())
}

func TestCPUOfflineLimit(t *testing.T) {
	for _, tt := range []struct {
		present, minCPUs int
		fraction         float64
		want             int
	}{
		{present: 8, minCPUs: 2, fraction: 0.75, want: 2},
		{present: 4, minCPUs: 2, fraction: 0.75, want: 1},
		{present: 10, minCPUs: 2, fraction: 0.7, want: 3}, // 0.7 × 10 needs 7, not 8
		{present: 2, minCPUs: 2, fraction: 0.5, want: 0},
		{present: 1, minCPUs: 2, fraction: 0, want: 0},
		{present: 64, minCPUs: 60, fraction: 0.5, want: 4},
	} {
		b := policy.Budgets{MinOnlineCPUs: tt.minCPUs, MinOnlineCPUFraction: tt.fraction}
		require.Equal(t, tt.want, cpuOfflineLimit(b, tt.present), "%+v", tt)
	}
}
