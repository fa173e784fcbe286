package kernel

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// sourceStates reads {name: state} from a status JSON step.
func sourceStates(t checker, r Result) map[string]string {
	t.Helper()
	raw, ok := jsonField(r, "sources").([]any)
	require.True(t, ok, "status has sources: %v", r.Data["json"])
	out := map[string]string{}
	for _, x := range raw {
		m, _ := x.(map[string]any)
		name, _ := m["name"].(string)
		state, _ := m["state"].(string)
		detail, _ := m["detail"].(string)
		out[name] = state
		out[name+".detail"] = detail
	}
	return out
}

// TestDaemonEBPF runs the daemon scenarios with the default
// sources, so errors arrive through the eBPF probes, and holds them to the
// same checks as through tracefs (TestDaemonPageOffline, ...Uncorrected,
// ...CPUOffline), plus the storm's exact total.
func TestDaemonEBPF(t *testing.T) {
	forEachCell(t, true, func(t *testing.T, lab *Lab, cell Cell) {
		all := sharedResults(t, lab, cell, EBPFCellScenario(), RunOptions{WithDaemon: true})
		requireModulesLoaded(t, all)

		page := all.Section("page")
		src := sourceStates(t, only(t, page, "daemon-armed"))
		require.Equal(t, "armed", src["ebpf"], "eBPF in use: %v", src)
		require.Equal(t, "standby", src["tracefs"], "tracefs stands by: %v", src)
		t.Logf("%s: ebpf %q", cell, src["ebpf.detail"])
		checkPageScenario(t, page, cell.String()+" ebpf")

		ue := all.Section("ue")
		only(t, ue, "daemon-armed")
		require.True(t, hwpoison(t, ue, "kpf-after"), "page hard-offlined")
		require.Equal(t, 4.0, hwCorruptedDelta(t, ue), "poisoned exactly once")
		mf, _ := only(t, ue, "trace").Number("other_events")
		require.Equal(t, 1.0, mf, "one memory_failure_event: a single hard offline")
		act := oneAction(t, faultyCases(t, only(t, ue, "faulty")), pfnResource(heldPFNs(t, ue)[0]), "hard-offline")
		require.Equal(t, "isolated", act.Outcome, "%+v", act)

		storm := all.Section("storm")
		delivered, _ := only(t, storm, "delivered").Number("mce_record")
		require.Positive(t, delivered)
		only(t, storm, "caught-up")
		st := only(t, storm, "status")
		errs, _ := jsonField(st, "events", "errors").(float64)
		received, _ := jsonField(st, "events", "received").(float64)
		rss, _ := only(t, storm, "rss").Number("vmhwm")
		t.Logf("%s eBPF storm: tracepoint delivered %.0f, daemon counted %.0f errors in %.0f events, VmHWM %.0f kB", cell, delivered, errs, received, rss)
		require.Equal(t, delivered, errs, "every record the tracepoint delivered counted once")
		require.Less(t, received, delivered, "aggregated in the kernel: fewer events than records")
		require.Equal(t, true, jsonField(st, "storming"))
		cases := faultyCases(t, only(t, storm, "faulty"))
		require.Equal(t, 1, diagnosed(cases, "storm"), "storm case raised once: %+v", cases)
		require.Equal(t, "isolated", oneAction(t, cases, pfnResource(heldPFNs(t, storm)[0]), "soft-offline").Outcome)

		cpu := all.Section("cpu")
		only(t, cpu, "cpu2-offline")
		online, _ := only(t, cpu, "cpu2-state").Bool("online")
		require.False(t, online, "CPU 2 offlined by the daemon")
		online, _ = only(t, cpu, "cpu3-state").Bool("online")
		require.True(t, online, "CPU 3 kept online by the budget")
		cpuCases := faultyCases(t, only(t, cpu, "faulty"))
		require.Equal(t, "isolated", oneAction(t, cpuCases, "cpu:2", "cpu-offline").Outcome)
		require.Equal(t, "refused", oneAction(t, cpuCases, "cpu:3", "cpu-offline").Outcome)
	})
}

// TestDaemonNoEBPF: the cell's scenarios run with --no-ebpf (CellScenario);
// status says tracefs reads the tracepoints and why eBPF does not.
func TestDaemonNoEBPF(t *testing.T) {
	forEachCell(t, true, func(t *testing.T, lab *Lab, cell Cell) {
		src := sourceStates(t, only(t, cellSection(t, lab, cell, "page"), "daemon-armed"))
		require.Equal(t, "armed", src["tracefs"], "%v", src)
		require.Equal(t, "unavailable", src["ebpf"], "%v", src)
		require.Contains(t, src["ebpf.detail"], "--no-ebpf")
	})
}

// TestNeverLate injects from every CPU in turn, NeverLateRounds times per
// source, and requires the daemon to log each record within 1 s of its
// injection: a correctness bound (a lost wake-up left records ~10 s in a
// ring buffer), not a speed figure.
func TestNeverLate(t *testing.T) {
	forEachCell(t, true, func(t *testing.T, lab *Lab, cell Cell) {
		run, err := lab.Run(t.Context(), cell, NeverLateScenario(), RunOptions{WithDaemon: true})
		all := runResults(t, cell, NeverLateScenario(), run, err)
		log := DaemonLog(run.Console)
		for _, name := range []string{"late-ebpf", "late-tracefs"} {
			rs := all.Section(name)
			src := sourceStates(t, only(t, rs, "daemon-armed"))
			want := strings.TrimPrefix(name, "late-")
			require.Equal(t, "armed", src[want], "%s: %v", name, src)
			injections := rs.Step("late-inject")
			require.Len(t, injections, 4*NeverLateRounds)
			var lags []float64
			for i, inj := range injections {
				require.True(t, inj.OK, "%s injection %d: %s", name, i, inj.Error)
				addr, err := strconv.ParseUint(strings.TrimPrefix(inj.String("addr"), "0x"), 16, 64)
				require.NoError(t, err)
				at, _ := inj.Number("bank_mono_us")
				// Intel's misc 0x8c makes the address page-granular; the
				// AMD model logs it whole.
				seen := FirstAfter(log, int64(at)-500_000, "hardware error", fmt.Sprintf("addr=%#x ", addr&^0xfff))
				if seen < 0 {
					seen = FirstAfter(log, int64(at)-500_000, "hardware error", fmt.Sprintf("addr=%#x ", addr))
				}
				require.Positive(t, seen, "%s injection %d (cpu %v, %#x): the daemon never logged it", name, i, inj.Data["cpu"], addr)
				lag := (float64(seen) - at) / 1000
				lags = append(lags, lag)
				require.Less(t, lag, 1000.0, "%s injection %d (cpu %v): delivered %.0f ms after injection", name, i, inj.Data["cpu"], lag)
			}
			sort.Float64s(lags)
			t.Logf("%s %s: %d injections over 4 CPUs, delivery lag median %.1f ms, max %.1f ms", cell, name, len(lags), Median(lags), lags[len(lags)-1])
		}
	})
}
