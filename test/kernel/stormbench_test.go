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
		// USER_HZ is 100 on Debian's kernels: a tick is 10 ms.
		ticks := func(step string) float64 {
			v, _ := only(t, rs, step).Number("cpu_ticks")
			return v
		}
		idle := ticks("before") - ticks("idle-start")
		rssIdle, _ := only(t, rs, "before").Number("vmrss")
		t.Logf("%-7s idle: %.0f CPU ticks over %d s with no error, RSS %.1f MiB after them", path, idle, IdleSeconds, rssIdle/1024)
		injecting := (ticks("injected") - ticks("before")) * 10
		cpuMs := (ticks("after") - ticks("before")) * 10
		hwm, _ := only(t, rs, "after").Number("vmhwm")
		perRecord[path] = cpuMs / delivered
		t.Logf("%-7s storm: %.0f records delivered on %d pages, %.0f events, daemon CPU %.0f ms (%.0f ms while injecting) = %.3f ms per delivered record, peak RSS %.1f MiB",
			path, delivered, StormBenchPages, received, cpuMs, injecting, perRecord[path], hwm/1024)
	}
	if perRecord["tracefs"] > 0 {
		t.Logf("daemon CPU per delivered record, eBPF / tracefs: %.2f", perRecord["ebpf"]/perRecord["tracefs"])
	}
}
