package test

import (
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
	"github.com/selfprotect/selfprotect/sim"
)

var intel612 = sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 4}

func TestStatusWithoutDaemonFails(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "status", "--socket", filepath.Join(t.TempDir(), "none.sock")).CombinedOutput()
	var ex *exec.ExitError
	require.ErrorAs(t, err, &ex)
	require.Equal(t, 1, ex.ExitCode())
	require.Contains(t, string(out), "no daemon answers")
}

func TestStatusArmedAndSecondRunRefuses(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{})
	out, code := d.cli("status")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "armed")
	require.Contains(t, out, "tracefs")

	// Same state directory: the lock refuses, and the first daemon's trace
	// instance is left alone.
	second := exec.Command(binary, append([]string{"run"}, d.flags...)...)
	out2, err := second.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out2), "another selfprotect daemon is running")
	// Another state directory but the same socket: refused too.
	flags := append(pathFlags(m), "--state", filepath.Join(t.TempDir(), "other"), "--socket", d.socket)
	out3, err := exec.Command(binary, append([]string{"run"}, flags...)...).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out3), "answers")

	st := d.status()
	require.True(t, st.Armed)
	require.False(t, st.Degraded, st.Problems)
	require.Equal(t, "1", m.read(t, "sys/kernel/tracing/instances/selfprotect/events/mce/mce_record/enable"))
}

// Another tool (trace-cmd reset, say) disables our event: status must turn
// degraded and say which, and recover when the event is back.
func TestDegradedWhenEventDisabledBehindOurBack(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{})
	m.write(t, "sys/kernel/tracing/instances/selfprotect/events/mce/mce_record/enable", "0")
	require.Eventually(t, func() bool {
		_, code := d.cli("status")
		return code == 3
	}, 10*time.Second, 50*time.Millisecond)
	out, _ := d.cli("status")
	require.Contains(t, out, "mce/mce_record disabled")

	m.write(t, "sys/kernel/tracing/instances/selfprotect/events/mce/mce_record/enable", "1")
	require.Eventually(t, func() bool {
		_, code := d.cli("status")
		return code == 0
	}, 10*time.Second, 50*time.Millisecond)

	m.write(t, "sys/kernel/tracing/instances/selfprotect/tracing_on", "0")
	require.Eventually(t, func() bool {
		out, code := d.cli("status")
		return code == 3 && strings.Contains(out, "tracing_on is 0")
	}, 10*time.Second, 50*time.Millisecond)
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{})
	out, code := d.cli("pause")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "paused")

	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	d.settle(500 * time.Millisecond)
	cases := d.faulty()
	require.Len(t, cases, 1, "errors are still counted and the case opened while paused")
	// The decision is stored before anything else (write-ahead), then
	// why nothing was written.
	require.Equal(t, fault.OutcomeIntended, cases[0].Actions[0].Outcome)
	require.Equal(t, fault.OutcomePaused, cases[0].Actions[1].Outcome)
	require.Empty(t, m.Offlined(), "nothing written while paused")
	require.True(t, d.status().Paused)

	out, code = d.cli("resume")
	require.Equal(t, 0, code, out)
	require.Eventually(t, func() bool { return len(m.Offlined()) == 1 }, 10*time.Second, 20*time.Millisecond)
	d.settle(300 * time.Millisecond)
	cases = d.faulty()
	require.Equal(t, fault.CaseIsolated, cases[0].State)
}

// A reboot brings offlined CPUs and pages back; the daemon re-isolates what
// its store says it isolated, and never acts twice on one resource.
func TestRestartReisolatesAndNeverActsTwice(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{})
	require.NoError(t, m.InjectCacheCE(2, 5))
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	d.settle(500 * time.Millisecond)
	require.Equal(t, "0-1,3", m.read(t, "sys/devices/system/cpu/online"))
	require.Len(t, m.Offlined(), 1)
	d.stop()

	// "Reboot": the CPU comes back online. (The simulated page stays
	// poisoned, like a kernel with the page already retired.)
	m.write(t, "sys/devices/system/cpu/cpu2/online", "1")
	require.Eventually(t, func() bool { return m.read(t, "sys/devices/system/cpu/online") == "0-3" }, 5*time.Second, 10*time.Millisecond)

	d2 := startDaemon(t, m, daemonOpts{state: d.state})
	require.Eventually(t, func() bool { return m.read(t, "sys/devices/system/cpu/online") == "0-1,3" }, 10*time.Second, 20*time.Millisecond,
		"CPU 2 re-isolated after restart")
	// The engine rebuilt from the stored errors already tripped on page
	// 0x2d94 (its case is stored): more errors open no second case and
	// nothing is written a second time.
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	d2.settle(500 * time.Millisecond)
	require.Len(t, m.Offlined(), 1, "the page was written once")
	var outcomes []fault.Outcome
	for _, c := range d2.faulty() {
		if c.Suspect == fault.Page(0x2d94) {
			for _, a := range c.Actions {
				outcomes = append(outcomes, a.Outcome)
			}
		}
	}
	require.Equal(t, []fault.Outcome{fault.OutcomeIntended, fault.OutcomeIsolated}, outcomes)
}

// Garbage in a trace pipe is counted and survived; the next good record is
// still read.
func TestGarbageTracePage(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{})
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)
	fifo := filepath.Join(m.Dir(), "sys/kernel/tracing/instances/selfprotect/per_cpu/cpu0/trace_pipe_raw")
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.Write(garbage)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	st := d.settle(500 * time.Millisecond)
	require.GreaterOrEqual(t, st.Events.CorruptPages+st.Events.Undecodable, uint64(1), "the garbage page is counted")
	require.Equal(t, uint64(2), st.Events.Counted)
	require.Len(t, m.Offlined(), 1)
	out, code := d.cli("status")
	require.Equal(t, 0, code, out)
}

// A soft offline the kernel does not carry out is reported as a failure
// with its evidence, never as success.
func TestSoftOfflineFailureReported(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{})
	require.NoError(t, m.FailNextOffline(1))
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	d.settle(3 * time.Second)
	cases := d.faulty()
	require.Len(t, cases, 1)
	require.Equal(t, fault.CaseFailed, cases[0].State)
	require.Equal(t, fault.OutcomeIntended, cases[0].Actions[0].Outcome)
	require.Equal(t, fault.OutcomeFailed, cases[0].Actions[1].Outcome)
	require.Contains(t, cases[0].Actions[1].Detail, "HWPOISON")
	out, code := d.cli("explain", cases[0].ID[:8])
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "failed")
	require.Contains(t, out, "evidence (2)")
}

// SIGHUP reloads the policy; a broken file keeps the running one.
func TestReloadPolicy(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(policyFile, []byte("mode: enforce\n"), 0o644))
	d := startDaemon(t, m, daemonOpts{args: []string{"--config", policyFile}})
	require.Equal(t, policy.ModeEnforce, d.status().Mode)

	require.NoError(t, os.WriteFile(policyFile, []byte("mode: dry-run\nrules: {page: {thresold: 3}}\n"), 0o644))
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(d.log.String(), "policy reload failed") }, 30*time.Second, 20*time.Millisecond)
	require.Contains(t, d.log.String(), "thresold")
	require.Equal(t, policy.ModeEnforce, d.status().Mode)

	require.NoError(t, os.WriteFile(policyFile, []byte("mode: dry-run\n"), 0o644))
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return d.status().Mode == policy.ModeDryRun }, 30*time.Second, 20*time.Millisecond)
}

func TestCheckConfigErrorsNameFileAndLine(t *testing.T) {
	t.Parallel()
	tests := []struct{ yaml, want string }{
		{"rules:\n  page:\n    thresold: 3\n", "bad.yaml:3"},
		{"rules:\n  page:\n    threshold: -1\n", "rules.page.threshold"},
		{"rules:\n  cpu:\n    window: 24 hours\n", "bad.yaml:3"},
		{"mode: [\n", "bad.yaml:"},
	}
	for _, tc := range tests {
		p := filepath.Join(t.TempDir(), "bad.yaml")
		require.NoError(t, os.WriteFile(p, []byte(tc.yaml), 0o644))
		out, err := exec.Command(binary, "check-config", p).CombinedOutput()
		require.Error(t, err, tc.yaml)
		require.Contains(t, string(out), tc.want)
	}
	out, err := exec.Command(binary, "check-config").CombinedOutput()
	require.NoError(t, err)
	require.Contains(t, string(out), "threshold: 2")
}

// A storm over 100 000 distinct pages: every page is tracked, nothing
// trips, and the daemon's peak memory stays bounded. The storm rate is
// low because the daemon rates records as it receives them, and a loaded
// host reads them below the built-in 2000/s.
func TestStormMemoryBounded(t *testing.T) {
	t.Parallel()
	m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "amd", CPUs: 4, MemoryMB: 1024})
	d := startDaemon(t, m, daemonOpts{policy: "rules: {storm: {rate: 100}}\n"})
	pages := make([]uint64, 0, 100000)
	for i := uint64(0); i < 100000; i++ {
		pages = append(pages, 0x1000000+i*fault.PageSize)
	}
	require.NoError(t, m.Storm(len(pages), pages))
	st := d.settle(time.Second)
	require.Equal(t, uint64(len(pages)), st.Events.Counted)
	require.True(t, st.Storming)
	hwm := vmHWM(t, d.cmd.Process.Pid)
	t.Logf("storm of %d CEs over %d distinct pages: daemon peak RSS %d MiB", len(pages), len(pages), hwm>>20)
	require.Less(t, hwm, uint64(256<<20), "peak RSS")
	cases := d.faulty()
	require.Len(t, cases, 1)
	require.Equal(t, fault.DiagStorm, cases[0].Diagnosis)
}

func vmHWM(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// repair undoes a CPU offline, re-arms the engine and closes the case; the
// store then no longer lists the CPU for re-isolation.
func TestRepairUndoesAndRearms(t *testing.T) {
	t.Parallel()
	m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 8})
	d := startDaemon(t, m, daemonOpts{policy: "budgets: {cpu_offline_interval: 0s}\n"})
	require.NoError(t, m.InjectCacheCE(2, 5))
	d.settle(300 * time.Millisecond)
	require.Equal(t, "0-1,3-7", m.read(t, "sys/devices/system/cpu/online"))
	cases := d.faulty()
	require.Len(t, cases, 1)

	out, code := d.cli("repair", cases[0].ID[:8])
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "CPU 2 online again")
	require.Eventually(t, func() bool { return m.read(t, "sys/devices/system/cpu/online") == "0-7" }, 5*time.Second, 10*time.Millisecond)
	all := d.faulty()
	require.Equal(t, fault.CaseRepaired, all[0].State)
	out, code = d.cli("repair", cases[0].ID[:8])
	require.NotEqual(t, 0, code)
	require.Contains(t, out, "already repaired")

	// Re-armed: five more errors open a new case and offline it again.
	require.NoError(t, m.InjectCacheCE(2, 5))
	d.settle(300 * time.Millisecond)
	require.Equal(t, "0-1,3-7", m.read(t, "sys/devices/system/cpu/online"))
	out, _ = d.cli("faulty")
	require.Contains(t, out, "isolated")
}

// The history commands read the store, with the daemon running or not.
func TestHistoryCommands(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{})
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	require.NoError(t, m.InjectMemoryCE(0x2c14040, 1, 1))
	d.settle(500 * time.Millisecond)
	d.stop()

	out, code := d.cli("events", "--resource", "page:0x2d94")
	require.Equal(t, 0, code, out)
	require.Equal(t, 2, strings.Count(out, "addr=0x2d94"), out)
	require.NotContains(t, out, "0x2c14")
	out, code = d.cli("events", "--resource", "bogus:1")
	require.NotEqual(t, 0, code)
	require.Contains(t, out, "unknown kind")

	cases := d.faulty()
	require.Len(t, cases, 1)
	out, code = d.cli("explain", cases[0].ID[:8])
	require.Equal(t, 0, code, out)
	for _, want := range []string{"soft-offline-page", "evidence (2)", "history:", "isolated", "undo: echo 0x2d94"} {
		require.Contains(t, out, want)
	}
	out, code = d.cli("faulty")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "page:0x2d94")
}

// /metrics on loopback: error counters by source and class, cases, actions
// and budgets, read from the same snapshot as status.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{})
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	require.NoError(t, m.InjectCacheCE(3, 1))
	st := d.settle(500 * time.Millisecond)
	require.True(t, strings.HasPrefix(st.Metrics, "http://127.0.0.1:"), st.Metrics)
	scrape := func() string {
		resp, err := http.Get(st.Metrics)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(body)
	}
	want := []string{
		`selfprotect_errors_total{class="memory",severity="corrected",source="tracefs:mce_record"} 2`,
		`selfprotect_errors_total{class="cache",severity="corrected",source="tracefs:mce_record"} 1`,
		`selfprotect_cases{diagnosis="soft-offline-page",state="isolated"} 1`,
		`selfprotect_actions_total{kind="soft-offline",outcome="isolated"} 1`,
		`selfprotect_armed 1`,
		`selfprotect_degraded 0`,
		`selfprotect_source_up{source="tracefs"} 1`,
		`selfprotect_cpus{state="online"} 4`,
		// Budgets are refreshed by the once-a-second health check.
		`selfprotect_pages_retired{by="selfprotect"} 1`,
		// Count-once: where memory errors are counted from, and why.
		`selfprotect_memory_errors_first_total{path="mce_record"} 2`,
		`selfprotect_memory_errors_merged_total{path="mc_event"} 0`,
		`selfprotect_count_path_info{class="memory corrected",from="mce_record"} 1`,
	}
	require.Eventually(t, func() bool {
		text := scrape()
		for _, w := range want {
			if !strings.Contains(text, w) {
				return false
			}
		}
		return true
	}, 10*time.Second, 100*time.Millisecond, "metrics lack some of %q", want)
}

// No tracefs and no EDAC: the daemon stays up, not armed, and says why; it
// retries the sources in the background.
func TestNoSourceRunsNotArmed(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	d := launchDaemon(t, m, daemonOpts{args: []string{"--tracefs", filepath.Join(t.TempDir(), "no-tracefs")}})
	require.Eventually(t, func() bool {
		_, code := d.cli("status")
		return code == 2
	}, 10*time.Second, 50*time.Millisecond)
	out, _ := d.cli("status")
	require.Contains(t, out, "no event source is armed")
	require.Contains(t, out, "tracefs")
	select {
	case err := <-d.exited:
		t.Fatalf("daemon exited: %v", err)
	default:
	}
}
