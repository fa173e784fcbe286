package test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/sim"
)

// TestStormBenchmark is the storm benchmark of `make bench` (skipped
// otherwise): N corrected errors over four pages pushed through the whole
// path (simulated ring-buffer pages → tracefs reader → mce decoder → count
// once → policy → SQLite history). It reports end-to-end events/s and the
// daemon's peak RSS; the simulator producing the pages shares the machine,
// so the figure is a floor.
func TestStormBenchmark(t *testing.T) {
	if os.Getenv("SELFPROTECT_STORM") == "" {
		t.Skip("set SELFPROTECT_STORM=1 (make bench) to run the storm benchmark")
	}
	n := 500000
	if v, err := strconv.Atoi(os.Getenv("SELFPROTECT_STORM_N")); err == nil && v > 0 {
		n = v
	}
	for _, kernel := range []string{"6.1", "6.12"} {
		t.Run(kernel, func(t *testing.T) {
			m := newMachine(t, sim.Profile{Kernel: kernel, CPU: "intel", CPUs: 4, MemoryMB: 2048})
			d := startDaemon(t, m, daemonOpts{})
			pages := []uint64{0x100000, 0x101000, 0x2000000, 0x2001000}
			start := time.Now()
			require.NoError(t, m.Storm(n, pages))
			produced := time.Since(start)
			var counted uint64
			for counted < uint64(n) && time.Since(start) < 5*time.Minute {
				counted = d.status().Events.Counted
				time.Sleep(5 * time.Millisecond)
			}
			elapsed := time.Since(start)
			require.Equal(t, uint64(n), counted)
			st := d.settle(500 * time.Millisecond)
			t.Logf("storm %s: %d CEs end to end in %s = %.0f events/s (simulator alone wrote them in %s = %.0f/s); stored %d, not stored %d; peak RSS %d MiB",
				kernel, n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), produced.Round(time.Millisecond),
				float64(n)/produced.Seconds(), st.Events.Stored, st.Events.NotStored, vmHWM(t, d.cmd.Process.Pid)>>20)
		})
	}
}
