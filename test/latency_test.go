package test

import (
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDecidingLatency measures, on the simulator, the time from injecting
// the second corrected error on a fresh page to the daemon's offline write
// reaching the fake kernel. It asserts only that every page is offlined;
// the figure is logged (speed belongs to benchmarks, not to pass/fail).
// SELFPROTECT_LATENCY_PAGES sets the sample size (default 20).
func TestDecidingLatency(t *testing.T) {
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{})
	n := 20
	if v := os.Getenv("SELFPROTECT_LATENCY_PAGES"); v != "" {
		_, err := fmtSscan(v, &n)
		require.NoError(t, err)
	}
	var lat []time.Duration
	for i := 0; i < n; i++ {
		addr := uint64(0x1000000 + i*0x1000)
		require.NoError(t, m.InjectMemoryCE(addr, 1, 1))
		// Let the first error be counted on its own.
		time.Sleep(20 * time.Millisecond)
		before := len(m.Offlined())
		start := time.Now()
		require.NoError(t, m.InjectMemoryCE(addr, 1, 1))
		require.Eventually(t, func() bool { return len(m.Offlined()) > before }, 10*time.Second, 200*time.Microsecond)
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	t.Logf("deciding latency over %d pages (2nd CE injected -> offline write seen): median %v, p90 %v, max %v",
		n, lat[n/2], lat[n*9/10], lat[n-1])
	d.stop()
}

func fmtSscan(s string, n *int) (int, error) { return fmt.Sscan(s, n) }
