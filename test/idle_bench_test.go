package test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/sim"
	"github.com/selfprotect/selfprotect/test/procmem"
)

// procSample is what /proc says about the daemon at one instant.
type procSample struct {
	ticks uint64 // utime + stime, in clock ticks (USER_HZ)
	wakes uint64 // context switches of every thread, voluntary or not
	// perThread is each thread's context switches, voluntary and not, by
	// thread id: which of the runtime's threads an idle wake-up costs.
	perThread map[string][2]uint64
	status    map[string]uint64
}

func sampleProc(t *testing.T, pid int) procSample {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	require.NoError(t, err)
	// The command name may hold spaces: fields count from after its ')'.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	utime, err := strconv.ParseUint(f[11], 10, 64)
	require.NoError(t, err)
	stime, err := strconv.ParseUint(f[12], 10, 64)
	require.NoError(t, err)
	s := procSample{ticks: utime + stime, status: map[string]uint64{}, perThread: map[string][2]uint64{}}
	tasks, err := os.ReadDir(filepath.Join(dir, "task"))
	require.NoError(t, err)
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, "task", task.Name(), "status"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		st := statusFields(b)
		vol, nonvol := st["voluntary_ctxt_switches"], st["nonvoluntary_ctxt_switches"]
		s.wakes += vol + nonvol
		s.perThread[task.Name()] = [2]uint64{vol, nonvol}
	}
	b, err := os.ReadFile(filepath.Join(dir, "status"))
	require.NoError(t, err)
	s.status = statusFields(b)
	return s
}

func statusFields(b []byte) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if f := strings.Fields(v); len(f) > 0 {
			if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// TestIdleBenchmark is the idle benchmark of `make bench` (skipped
// otherwise): the real binary on the simulator, its own timers (no
// --health-interval from the harness), a systemd watchdog as the unit sets
// it, no error for SELFPROTECT_IDLE_SECONDS (60). It reports the CPU ticks
// and the wake-ups (context switches, which do not depend on the load
// others put on the machine) over that time, and the resident set at its
// end, anonymous and file-backed.
func TestIdleBenchmark(t *testing.T) {
	if os.Getenv("SELFPROTECT_IDLE") == "" {
		t.Skip("set SELFPROTECT_IDLE=1 (make bench) to run the idle benchmark")
	}
	secs := 60
	if v, err := strconv.Atoi(os.Getenv("SELFPROTECT_IDLE_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	for _, tc := range []struct {
		name string
		prof sim.Profile
	}{
		{"tracefs", sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 4}},
		{"tracefs+edac", sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 4, EDAC: true, Controllers: 2, DIMMsPerController: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t, tc.prof)
			start := time.Now()
			d := startDaemon(t, m, daemonOpts{health: "default", args: []string{"--log-level", "info"},
				env: []string{"WATCHDOG_USEC=30000000"}})
			pid := d.cmd.Process.Pid
			// Measure from a few seconds in: start-up work is not idling.
			time.Sleep(time.Until(start.Add(5 * time.Second)))
			a := sampleProc(t, pid)
			time.Sleep(time.Until(start.Add(time.Duration(secs) * time.Second)))
			b := sampleProc(t, pid)
			span := time.Duration(secs-5) * time.Second
			perMin := func(n uint64) float64 { return float64(n) * float64(time.Minute) / float64(span) }
			t.Logf("idle %s, %d s after start: %.1f CPU ticks/min, %.0f wake-ups/min (context switches), RSS %.1f MiB (anon %.1f, file %.1f), peak %.1f MiB, %d threads",
				tc.name, secs, perMin(b.ticks-a.ticks), perMin(b.wakes-a.wakes),
				float64(b.status["VmRSS"])/1024, float64(b.status["RssAnon"])/1024, float64(b.status["RssFile"])/1024,
				float64(b.status["VmHWM"])/1024, b.status["Threads"])
			smaps, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps"))
			require.NoError(t, err)
			mem, err := procmem.Parse(smaps)
			require.NoError(t, err)
			t.Logf("idle %s, resident set by mapping (MiB): %s", tc.name, mem)
			// A guard against gross regressions (start-up data kept
			// alive), far above the 9-14 MiB measured: not the target.
			require.Less(t, float64(mem.RSS)/1024, 32.0, "idle RSS in MiB")
			t.Logf("idle %s, wake-ups per thread over the span (voluntary+involuntary): %s", tc.name, threadWakes(a, b))
			require.True(t, d.status().Armed)
		})
	}
}

// threadWakes lists each thread's context switches between two samples,
// busiest first ("tid:voluntary+involuntary"), leaving out idle threads.
func threadWakes(a, b procSample) string {
	type tw struct {
		tid        string
		vol, invol uint64
	}
	var ts []tw
	for tid, nb := range b.perThread {
		na := a.perThread[tid] // zero for a thread started since
		if d := (tw{tid, nb[0] - na[0], nb[1] - na[1]}); d.vol+d.invol > 0 {
			ts = append(ts, d)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].vol+ts[i].invol > ts[j].vol+ts[j].invol })
	parts := make([]string, len(ts))
	for i, x := range ts {
		parts[i] = fmt.Sprintf("%s:%d+%d", x.tid, x.vol, x.invol)
	}
	return strings.Join(parts, " ")
}
