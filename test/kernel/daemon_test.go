package kernel

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// faultyCase is the part of `selfprotect faulty --json` the scenarios
// check (fault.Case fields are untagged; actions is tagged).
type faultyCase struct {
	Suspect string
	State   string
	Actions []struct {
		Resource   string
		Kind       string
		Outcome    string
		Violations []string
		Detail     string
	} `json:"actions"`
}

func faultyCases(t *testing.T, r Result) []faultyCase {
	t.Helper()
	raw, err := json.Marshal(r.Data["json"])
	require.NoError(t, err)
	var cases []faultyCase
	require.NoError(t, json.Unmarshal(raw, &cases), "faulty --json: %s", raw)
	return cases
}

func findAction(cases []faultyCase, resource, kind string) (outcome string, violations []string, found bool) {
	for _, c := range cases {
		for _, a := range c.Actions {
			if a.Resource == resource && a.Kind == kind {
				return a.Outcome, a.Violations, true
			}
		}
	}
	return "", nil, false
}

func pfnResource(hexPFN string) string {
	var pfn uint64
	fmt.Sscanf(hexPFN, "0x%x", &pfn)
	return fmt.Sprintf("page:%#x", pfn)
}

// TestDaemonPageOffline is scenario 1 of the issue on every selected cell.
func TestDaemonPageOffline(t *testing.T) {
	requireKernelGate(t)
	lab := newLab(t)
	daemonOrSkip(t, lab)
	for _, cell := range matrix(t) {
		t.Run(cell.String(), func(t *testing.T) {
			t.Parallel()
			rs := runScenario(t, lab, cell, PageScenario(), RunOptions{WithDaemon: true})
			requireModulesLoaded(t, rs)
			only(t, rs, "daemon-armed")
			requireAllOK(t, rs, "inject-a", 2)
			only(t, rs, "inject-b")

			poisoned, _ := only(t, rs, "kpf-a-before").Bool("hwpoison")
			require.False(t, poisoned)
			poisonedAt, _ := only(t, rs, "latency").Number("mono_us")
			injectedAt, _ := rs.Step("inject-a")[1].Number("mono_us")
			t.Logf("%s: deciding injection → HWPOISON %.1f ms", cell, (poisonedAt-injectedAt)/1000)
			poisoned, _ = only(t, rs, "kpf-a-after").Bool("hwpoison")
			require.True(t, poisoned, "page A soft-offlined by the daemon")
			only(t, rs, "b-seen")
			poisoned, _ = only(t, rs, "kpf-b-after").Bool("hwpoison")
			require.False(t, poisoned, "page B with one error left alone")

			before, _ := only(t, rs, "meminfo-before").Number("hardware_corrupted_kb")
			after, _ := only(t, rs, "meminfo-after").Number("hardware_corrupted_kb")
			require.Equal(t, before+4, after, "HardwareCorrupted grows by exactly one page")

			hold := only(t, rs, "hold")
			bad, _ := hold.Number("bad_words")
			require.Zero(t, bad, "held data intact")

			cases := faultyCases(t, only(t, rs, "faulty"))
			pfns := hold.Data["pfns_before"].([]any)
			outcome, _, found := findAction(cases, pfnResource(pfns[0].(string)), "soft-offline")
			require.True(t, found, "a soft-offline action on page A in %+v", cases)
			require.Equal(t, "isolated", outcome)
			_, _, found = findAction(cases, pfnResource(pfns[1].(string)), "soft-offline")
			require.False(t, found, "no action on page B")
		})
	}
}

// TestDaemonCPUOffline is scenario 2 of the issue on every selected cell.
func TestDaemonCPUOffline(t *testing.T) {
	requireKernelGate(t)
	lab := newLab(t)
	daemonOrSkip(t, lab)
	for _, cell := range matrix(t) {
		t.Run(cell.String(), func(t *testing.T) {
			t.Parallel()
			rs := runScenario(t, lab, cell, CPUScenario(), RunOptions{WithDaemon: true})
			requireModulesLoaded(t, rs)
			only(t, rs, "daemon-armed")
			requireAllOK(t, rs, "inject-cpu2", 5)
			requireAllOK(t, rs, "inject-cpu3", 5)
			only(t, rs, "cpu2-offline")
			online, _ := only(t, rs, "cpu2-state").Bool("online")
			require.False(t, online, "CPU 2 offlined by the daemon")
			only(t, rs, "refused")
			online, _ = only(t, rs, "cpu3-state").Bool("online")
			require.True(t, online, "CPU 3 kept online by the budget")

			cases := faultyCases(t, only(t, rs, "faulty"))
			outcome, _, found := findAction(cases, "cpu:2", "cpu-offline")
			require.True(t, found, "cpu-offline action on cpu:2 in %+v", cases)
			require.Equal(t, "isolated", outcome)
			outcome, violations, found := findAction(cases, "cpu:3", "cpu-offline")
			require.True(t, found, "cpu-offline action on cpu:3 in %+v", cases)
			require.Equal(t, "refused", outcome)
			require.NotEmpty(t, violations, "a refusal names the budget it would break")
		})
	}
}

// TestDaemonPageOfflineWithCEC runs scenario 1 on 6.12 with the kernel's
// CEC on. Whoever acts first, the page must end up poisoned exactly once
// and the daemon must record an outcome for it; which outcome is logged,
// since it depends on CEC's threshold for the CPU model.
func TestDaemonPageOfflineWithCEC(t *testing.T) {
	requireKernelGate(t)
	lab := newLab(t)
	daemonOrSkip(t, lab)
	for _, cell := range matrix(t) {
		if cell.Series != Series612 {
			continue
		}
		t.Run(cell.String(), func(t *testing.T) {
			t.Parallel()
			rs := runScenario(t, lab, cell, PageScenarioCEC(), RunOptions{WithDaemon: true})
			cec := only(t, rs, "cec").Data
			t.Logf("%s: CEC action_threshold %v%v", cell, cec["json"], cec["stdout"])
			poisoned, _ := only(t, rs, "kpf-a-after").Bool("hwpoison")
			require.True(t, poisoned, "page A poisoned by CEC or the daemon")
			before, _ := only(t, rs, "meminfo-before").Number("hardware_corrupted_kb")
			after, _ := only(t, rs, "meminfo-after").Number("hardware_corrupted_kb")
			require.Equal(t, before+4, after, "the page is poisoned once")
			bad, _ := only(t, rs, "hold").Number("bad_words")
			require.Zero(t, bad, "held data intact")
			cases := faultyCases(t, only(t, rs, "faulty"))
			pfns := only(t, rs, "hold").Data["pfns_before"].([]any)
			outcome, _, found := findAction(cases, pfnResource(pfns[0].(string)), "soft-offline")
			require.True(t, found, "the daemon records an outcome for page A: %+v", cases)
			t.Logf("%s with CEC on: daemon outcome for page A: %s", cell, outcome)
		})
	}
}
