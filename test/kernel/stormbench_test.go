package kernel

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStormBench is make bench-storm: StormBenchErrors corrected errors on
// each of StormBenchPages pages, the daemon pinned to one CPU, through
// eBPF and through tracefs in one boot (6.12, Intel model). It prints the
// records the tracepoint delivered, the daemon's CPU per delivered record,
// its peak RSS and the eBPF/tracefs ratio. It checks only that every
// delivered record was counted; the figures are measured, not asserted.
func TestStormBench(t *testing.T) {
	requireKernelGate(t)
	if os.Getenv("SELFPROTECT_STORM") != "1" {
		t.Skip("storm bench: set SELFPROTECT_STORM=1 (make bench-storm)")
	}
	lab := newLab(t)
	daemonOrSkip(t, lab)
	cell := Cell{Series: Series612, CPU: CPUIntel}
	all := runScenario(t, lab, cell, StormBenchScenario(), RunOptions{WithDaemon: true})
	perRecord := map[string]float64{}
	for _, path := range []string{"ebpf", "tracefs"} {
		rs := all.Section("storm-" + path)
		requireAllOK(t, rs, "storm", StormBenchPages)
		delivered, _ := only(t, rs, "delivered").Number("mce_record")
		require.Positive(t, delivered)
		only(t, rs, "caught-up")
		st := only(t, rs, "status")
		errs, _ := jsonField(st, "events", "errors").(float64)
		received, _ := jsonField(st, "events", "received").(float64)
		require.Equal(t, delivered, errs, "%s: every delivered record counted once", path)
		before, _ := only(t, rs, "before").Number("cpu_ticks")
		after := only(t, rs, "after")
		ticks, _ := after.Number("cpu_ticks")
		hwm, _ := after.Number("vmhwm")
		cpuMs := (ticks - before) * 10 // USER_HZ is 100 on Debian's kernels
		perRecord[path] = cpuMs / delivered
		t.Logf("%-7s: %.0f records delivered on %d pages, %.0f events, daemon CPU %.0f ms = %.3f ms per delivered record, peak RSS %.1f MiB",
			path, delivered, StormBenchPages, received, cpuMs, perRecord[path], hwm/1024)
	}
	if perRecord["tracefs"] > 0 {
		t.Logf("daemon CPU per delivered record, eBPF / tracefs: %.2f", perRecord["ebpf"]/perRecord["tracefs"])
	}
}
