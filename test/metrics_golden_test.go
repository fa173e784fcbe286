package test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/sim"
)

// The /metrics exposition, pinned: the daemon runs a fixed scenario on the
// simulator, is scraped, and the scrape (without the Go runtime's and the
// process's own series, volatile values blanked) must equal
// testdata/metrics/golden.prom. A renamed metric or label, a changed help
// text or type, a series gone or added, or a count that changed fails it.
// Regenerate with: go test ./test/ -run TestMetricsGolden -update
func TestMetricsGolden(t *testing.T) {
	t.Parallel()
	const dir = "testdata/metrics"
	sc, err := sim.LoadScenario(filepath.Join(dir, "scenario.yaml"))
	require.NoError(t, err)
	policy, err := os.ReadFile(filepath.Join(dir, "policy.yaml"))
	require.NoError(t, err)
	m := newMachine(t, sc.Profile)
	d := startDaemon(t, m, daemonOpts{policy: string(policy)})
	require.NoError(t, m.Play(context.Background(), sc))
	st := d.settle(time.Second)
	url := st.Metrics
	require.True(t, strings.HasPrefix(url, "http://127.0.0.1:"), url)
	scrape := func() string {
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		return string(body)
	}
	golden := filepath.Join(dir, "golden.prom")

	// The budgets follow the health check, which runs once a second after
	// the actions, and EDAC counter deltas wait for the mc_events that may
	// have reported them: wait for the state itself.
	ready := func(text string) bool {
		return strings.Contains(text, `selfprotect_budget_used{budget="pages_on_worst_dimm"} 1`) &&
			strings.Contains(text, `selfprotect_memory_errors_merged_total{path="edac_counter"} 3`) &&
			strings.Contains(text, `selfprotect_pages_retired{by="selfprotect"} 1`) &&
			strings.Contains(text, `outcome="refused"} 1`)
	}
	var raw, got string
	if *update {
		require.Eventually(t, func() bool { raw = scrape(); return ready(raw) }, 30*time.Second, 100*time.Millisecond)
		requireGolden(t, golden, normaliseExposition(raw))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "golden file missing: go test ./test/ -run TestMetricsGolden -update")
	// Bounded wait for the scrape to reach the golden state; on failure the
	// last scrape is compared, so the diff shows what differs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		raw = scrape()
		got = normaliseExposition(raw)
		if got == string(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != string(want) {
		t.Fatalf("golden %s differs (go test ./test/ -run TestMetricsGolden -update rewrites it):\n%s", golden, lineDiff(string(want), got))
	}

	// promtool lints the real exposition (names, types, help, units).
	// make rules-check runs the same lint on a scrape and fails without
	// promtool; here it runs when promtool is at hand (PATH, or unpacked
	// by rules-check under out/tools).
	pt, err := exec.LookPath("promtool")
	if err != nil {
		pt = "../out/tools/prometheus/usr/bin/promtool"
	}
	if _, err := os.Stat(pt); err != nil {
		t.Log("promtool not found: the exposition is linted by make rules-check only")
		return
	}
	cmd := exec.Command(pt, "check", "metrics")
	cmd.Stdin = strings.NewReader(raw)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
}

// volatileFamilies are the client library's runtime and process series:
// they measure the test machine, not the daemon's state.
var volatileFamilies = regexp.MustCompile(`^(# (HELP|TYPE) )?(go|process|promhttp)_`)

// timestampSample is a sample of a *_timestamp_seconds gauge with a value
// other than 0 (0 means "never" and stays).
var timestampSample = regexp.MustCompile(`^([a-z_]+_timestamp_seconds(\{[^}]*\})?) ([0-9.e+-]+)$`)

// volatileSamples vary with the test machine's clock: the storm rule's
// level (errors in the last 10 s) and the records received, which include
// one EDAC record per counter delta a poll saw (one error per poll or two
// in one, depending on when the 1 s poll falls between injections).
var volatileSamples = regexp.MustCompile(`^(selfprotect_engine_level\{resource="machine",rule="storm"\}|selfprotect_records_total\{fate="received"\}) [0-9.e+-]+$`)

func normaliseExposition(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if volatileFamilies.MatchString(line) {
			continue
		}
		if m := timestampSample.FindStringSubmatch(line); m != nil && m[3] != "0" {
			line = m[1] + " <timestamp>"
		}
		if m := volatileSamples.FindStringSubmatch(line); m != nil {
			line = m[1] + " <varies>"
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// lineDiff lists the lines only one side has ("-" golden, "+" scrape).
func lineDiff(want, got string) string {
	count := map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(got, "\n") {
		count[l]--
	}
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if count[l] > 0 {
			b.WriteString("- " + l + "\n")
			count[l]--
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if count[l] < 0 {
			b.WriteString("+ " + l + "\n")
			count[l]++
		}
	}
	return b.String()
}
