package kernel

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	profDir := os.Getenv("SELFPROTECT_STORM_PROFILE")
	cell := Cell{Series: Series612, CPU: CPUIntel}
	heapDir := os.Getenv("SELFPROTECT_STORM_HEAP")
	late, _ := strconv.Atoi(os.Getenv("SELFPROTECT_STORM_LATE_IDLE"))
	// SELFPROTECT_STORM_BASE names an earlier build whose eBPF storm runs
	// first in the same boot (section storm-ebpf-base).
	// SELFPROTECT_STORM_ISOLATE=0 turns the page rule off, to see the
	// storm's own cost without the four isolations.
	opt := StormBenchOptions{Profile: profDir != "", HeapProfile: heapDir != "", GODEBUG: os.Getenv("SELFPROTECT_STORM_GODEBUG"),
		LateIdle: late, NoIsolation: os.Getenv("SELFPROTECT_STORM_ISOLATE") == "0"}
	paths := []string{"ebpf", "tracefs"}
	if base := os.Getenv("SELFPROTECT_STORM_BASE"); base != "" {
		var err error
		opt.Baseline, err = os.ReadFile(base)
		require.NoError(t, err)
		paths = []string{"ebpf-base", "ebpf", "tracefs"}
	}
	if opt.NoIsolation {
		t.Log("page rule off: no isolation in this run")
	}
	all := runScenario(t, lab, cell, StormBenchScenario(opt), RunOptions{WithDaemon: true, Timeout: 15 * time.Minute})
	perRecord, aboveIdle := map[string]float64{}, map[string]float64{}
	for _, path := range paths {
		rs := all.Section("storm-" + path)
		requireAllOK(t, rs, "storm", StormBenchPages)
		delivered, _ := only(t, rs, "delivered").Number("mce_record")
		require.Positive(t, delivered)
		only(t, rs, "caught-up")
		st := only(t, rs, "status")
		errs, _ := jsonField(st, "events", "errors").(float64)
		received, _ := jsonField(st, "events", "received").(float64)
		require.Equal(t, delivered, errs, "%s: every delivered record counted once", path)
		num := func(step, key string) float64 {
			v, _ := only(t, rs, step).Number(key)
			return v
		}
		// USER_HZ is 100 on Debian's kernels: a tick is 10 ms. cpu_ns
		// (schedstat) is exact where ticks are sampled; both are shown.
		ticks := func(step string) float64 { return num(step, "cpu_ticks") }
		cpuMs := func(from, to string) float64 { return (num(to, "cpu_ns") - num(from, "cpu_ns")) / 1e6 }
		wallMs := func(from, to string) float64 { return (num(to, "mono_us") - num(from, "mono_us")) / 1e3 }
		idle := ticks("idle-end") - ticks("idle-start")
		rssIdle, _ := only(t, rs, "idle-end").Number("vmrss")
		rssAnon, _ := only(t, rs, "idle-end").Number("rssanon")
		rssFile, _ := only(t, rs, "idle-end").Number("rssfile")
		// The guest's binary sits on the initramfs, a tmpfs: its pages
		// count as shared memory, not as file pages.
		rssShmem, _ := only(t, rs, "idle-end").Number("rssshmem")
		rssFile += rssShmem
		ageMs, _ := only(t, rs, "idle-end").Number("age_ms")
		idleRate := cpuMs("idle-start", "idle-end") / wallMs("idle-start", "idle-end")
		// Times the daemon's threads were switched in (schedstat): its
		// wake-ups, which under emulation cost more than their own work.
		slices := func(from, to string) float64 { return num(to, "cpu_slices") - num(from, "cpu_slices") }
		t.Logf("%-7s idle: %.0f CPU ticks (%.0f ms on CPU, %.0f wake-ups) over %d s with no error; %.1f s after start RSS %.1f MiB (anon %.1f, file %.1f)",
			path, idle, cpuMs("idle-start", "idle-end"), slices("idle-start", "idle-end"), IdleSeconds, ageMs/1e3, rssIdle/1024, rssAnon/1024, rssFile/1024)
		t.Logf("%-7s armed, before idling (MiB): %s; the binary's sections: %s", path,
			only(t, rs, "idle-start-smaps").String("summary"), only(t, rs, "idle-start-smaps").String("sections"))
		// A guard, not the target: 20 MiB is what the README reports
		// against; this bound (idle runs measured 14.6-23.8 MiB, before
		// and after the THP opt-out) only catches a gross regression,
		// such as start-up data kept alive.
		require.Less(t, rssIdle/1024, float64(IdleRSSGuardMiB), "%s: idle RSS %.1f MiB", path, rssIdle/1024)
		sm := only(t, rs, "idle-smaps")
		t.Logf("%-7s idle resident set by mapping (MiB): %s; transparent huge pages: %s", path, sm.String("summary"), sm.String("thp"))
		t.Logf("%-7s idle, the binary's resident sections (MiB): %s%s", path, sm.String("sections"), sm.String("sections_error"))
		hwm, _ := only(t, rs, "after").Number("vmhwm")
		storm := cpuMs("before", "after")
		// The idle cost (health checks, timers) runs on through the storm;
		// what the storm itself costs is what exceeds it.
		excess := storm - idleRate*wallMs("before", "after")
		perRecord[path], aboveIdle[path] = storm/delivered, excess/delivered
		t.Logf("%-7s storm: %.0f records delivered on %d pages, %.0f events, daemon CPU %.0f ms over %.1f s (%.0f ms while injecting; %.0f ticks; %.0f wake-ups) = %.3f ms per delivered record; above the idle rate %.0f ms = %.3f ms per record; peak RSS %.1f MiB",
			path, delivered, StormBenchPages, received, storm, wallMs("before", "after")/1e3, cpuMs("before", "injected"),
			ticks("after")-ticks("before"), slices("before", "after"), perRecord[path], excess, aboveIdle[path], hwm/1024)
		t.Logf("%-7s switch-ins per thread (tid:n) before the storm: %s; after it: %s",
			path, only(t, rs, "before").String("thread_slices"), only(t, rs, "after").String("thread_slices"))
		for _, w := range []struct{ name, from, to string }{{"idle", "idle-start", "before"}, {"storm", "before", "after"}} {
			per, vol, nonvol, err := threadSwitches(only(t, rs, w.from).String("thread_ctxt"), only(t, rs, w.to).String("thread_ctxt"))
			require.NoError(t, err)
			secs := wallMs(w.from, w.to) / 1e3
			t.Logf("%-7s %s: %.0f wake-ups (%.1f/s) and %.0f preemptions (%.1f/s) over %.1f s; per thread (tid:voluntary/nonvoluntary): %s",
				path, w.name, vol, vol/secs, nonvol, nonvol/secs, secs, per)
		}
		if strings.HasPrefix(path, "ebpf") {
			n := func(k string) any { return jsonField(st, "events", k) }
			t.Logf("%-7s probes: %v records sent to userspace, %v counted in the kernel (%v of them on a full ring buffer), %v lost",
				path, n("ebpf_sent"), n("ebpf_aggregated"), n("ebpf_ringbuf_full"), n("ebpf_lost"))
		}
		if late > 0 {
			age, _ := only(t, rs, "idle-late").Number("age_ms")
			t.Logf("%-7s idle %.0f s after start (past the runtime's first periodic GC at 2 min) %.0f CPU ticks since the idle figures, resident set (MiB): %s; the binary's sections: %s",
				path, age/1e3, ticks("idle-late")-ticks("idle-end"), only(t, rs, "idle-late-smaps").String("summary"), only(t, rs, "idle-late-smaps").String("sections"))
		}
		if heapDir != "" {
			t.Logf("%-7s idle heap, after a GC: %s; resident set then: %s", path,
				strings.TrimSpace(only(t, rs, "idle-heap").String("stdout")), only(t, rs, "idle-heap-smaps").String("summary"))
			raw, err := base64.StdEncoding.DecodeString(only(t, rs, "heap-profile").String("base64"))
			require.NoError(t, err)
			file := filepath.Join(heapDir, "idle-"+path+".heap")
			require.NoError(t, os.WriteFile(file, raw, 0o644))
			t.Logf("%-7s heap profile: %s (go tool pprof -sample_index=inuse_space -top %s)", path, file, file)
		}
		if profDir != "" {
			raw, err := base64.StdEncoding.DecodeString(only(t, rs, "profile").String("base64"))
			require.NoError(t, err)
			file := filepath.Join(profDir, "storm-"+path+".pprof")
			require.NoError(t, os.WriteFile(file, raw, 0o644))
			t.Logf("%-7s CPU profile: %s (go tool pprof -top %s)", path, file, file)
		}
	}
	if perRecord["tracefs"] > 0 {
		for _, path := range paths[:len(paths)-1] {
			t.Logf("daemon CPU per delivered record, %s / tracefs: %.3f (above the idle rate: %.3f)",
				path, perRecord[path]/perRecord["tracefs"], aboveIdle[path]/aboveIdle["tracefs"])
		}
	}
}
