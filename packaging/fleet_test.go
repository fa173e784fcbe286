package packaging

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/sim"
)

const (
	rulesFile     = "prometheus/selfprotect-rules.yml"
	rulesTestFile = "prometheus/selfprotect-rules.test.yml"
	dashboardFile = "grafana/selfprotect.json"
)

// fleetMode says whether the slow checks run: they build and start the
// daemon and need promtool. `make rules-check` sets it; a plain `go test
// ./...` skips them and says so.
func fleetMode(t *testing.T) {
	t.Helper()
	if os.Getenv("SELFPROTECT_FLEET") != "1" {
		t.Skip("fleet checks need the daemon and promtool: run make rules-check (SELFPROTECT_FLEET=1)")
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool not found: apt-get install prometheus (make rules-check does this as root)")
	return p
}

type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID         int    `json:"id"`
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	require.NoError(t, dec.Decode(&d), "%s does not parse", dashboardFile)
	return d
}

// The dashboard is well-formed on its own: unique panel ids, a query in
// every target, every panel reading the datasource variable it declares.
func TestDashboardWellFormed(t *testing.T) {
	d := loadDashboard(t)
	require.NotEmpty(t, d.UID)
	require.NotEmpty(t, d.Panels)
	require.Len(t, d.Templating.List, 1)
	require.Equal(t, "datasource", d.Templating.List[0].Name)
	require.Equal(t, "prometheus", d.Templating.List[0].Query)
	ids := map[int]string{}
	for _, p := range d.Panels {
		require.NotContains(t, ids, p.ID, "panel id %d used twice (%q and %q)", p.ID, ids[p.ID], p.Title)
		ids[p.ID] = p.Title
		require.Equal(t, "${datasource}", p.Datasource.UID, "panel %q", p.Title)
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			require.NotEmpty(t, strings.TrimSpace(tg.Expr), "panel %q target %s", p.Title, tg.RefID)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var rf ruleFile
	require.NoError(t, yaml.Unmarshal(raw, &rf))
	out := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	return out
}

func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range loadDashboard(t).Panels {
		for _, tg := range p.Targets {
			out[fmt.Sprintf("panel %q/%s", p.Title, tg.RefID)] = tg.Expr
		}
	}
	return out
}

// Every alert the issue asks for exists, and promtool accepts and passes
// the rules' unit tests.
func TestRulesPromtool(t *testing.T) {
	exprs := ruleExprs(t)
	for _, want := range []string{"SelfprotectDown", "SelfprotectNotArmed", "SelfprotectDegraded",
		"SelfprotectPageBudgetNearlyExhausted", "SelfprotectCPUBudgetExhausted", "SelfprotectReplaceDIMM", "SelfprotectErrorStorm"} {
		require.Contains(t, exprs, "alert "+want)
	}
	fleetMode(t)
	pt := promtool(t)
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTestFile}} {
		out, err := exec.Command(pt, args...).CombinedOutput()
		require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
		require.Contains(t, string(out), "SUCCESS", "promtool %s", strings.Join(args, " "))
	}
}

// selector finds `metric{labels}` and bare metric names of ours in PromQL.
var selector = regexp.MustCompile(`(selfprotect_[a-z0-9_]+)(\{([^}]*)\})?`)

// labelName finds the label names in a selector's matchers.
var labelName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)

// exposition is what one scrape says: each metric family's label names.
type exposition map[string]map[string]bool

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? `)

func parseExposition(t *testing.T, text string) exposition {
	t.Helper()
	exp := exposition{}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "# TYPE ") {
			f := strings.Fields(line)
			require.Len(t, f, 4, line)
			if exp[f[2]] == nil {
				exp[f[2]] = map[string]bool{}
			}
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		labels := exp[m[1]]
		if labels == nil {
			labels = map[string]bool{}
			exp[m[1]] = labels
		}
		for _, lm := range labelName.FindAllStringSubmatch(m[3], -1) {
			labels[lm[1]] = true
		}
	}
	return exp
}

// checkNames reports the first metric, or label of a metric, that an
// expression uses and the scrape does not have.
func checkNames(exp exposition, exprs map[string]string) error {
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, where := range keys {
		expr := exprs[where]
		found := selector.FindAllStringSubmatch(expr, -1)
		// Prometheus's own up series for the selfprotect job is the one
		// outside name an expression may rest on alone.
		if len(found) == 0 && !strings.Contains(expr, `up{job="selfprotect"}`) {
			return fmt.Errorf("%s uses no selfprotect metric: %s", where, expr)
		}
		for _, m := range found {
			labels, ok := exp[m[1]]
			if !ok {
				return fmt.Errorf("%s uses %s, which the daemon does not expose", where, m[1])
			}
			for _, lm := range labelName.FindAllStringSubmatch(m[3], -1) {
				if !labels[lm[1]] {
					return fmt.Errorf("%s matches label %q on %s, which has only %v", where, lm[1], m[1], labels)
				}
			}
		}
	}
	return nil
}

// Against a real scrape of the daemon on the simulator (with a page
// isolated and cache errors counted, so cases and actions exist): promtool
// lints the exposition, and every metric and label the rules and the
// dashboard use is there.
func TestScrapeMatchesRulesAndDashboard(t *testing.T) {
	fleetMode(t)
	pt := promtool(t)
	text := scrapeDaemon(t)

	cmd := exec.Command(pt, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics on the daemon's /metrics:\n%s", out)

	exp := parseExposition(t, text)
	require.Contains(t, exp, "selfprotect_cases")
	require.True(t, exp["selfprotect_cases"]["diagnosis"], "no case in the scrape: %s", text)
	require.NoError(t, checkNames(exp, ruleExprs(t)))
	require.NoError(t, checkNames(exp, dashboardExprs(t)))
}

// The name check itself: a misspelt metric or label is caught.
func TestCheckNamesCatchesUnknownNames(t *testing.T) {
	exp := parseExposition(t, "# TYPE selfprotect_cpus gauge\nselfprotect_cpus{state=\"online\"} 4\n")
	for expr, want := range map[string]string{
		`selfprotect_cpu{state="online"}`:   "selfprotect_cpu, which the daemon does not expose",
		`selfprotect_cpus{status="online"}`: `label "status" on selfprotect_cpus`,
		`up == 0`:                           "uses no selfprotect metric",
	} {
		require.ErrorContains(t, checkNames(exp, map[string]string{"x": expr}), want)
	}
	require.NoError(t, checkNames(exp, map[string]string{
		"ok":   `selfprotect_cpus{state="online"} - 1`,
		"down": `up{job="selfprotect"} == 0`,
	}))
}

func binary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("SELFPROTECT_BIN"); b != "" {
		return b
	}
	b := filepath.Join(t.TempDir(), "selfprotect")
	build := exec.Command("go", "build", "-o", b, "../cmd/selfprotect")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "building selfprotect:\n%s", out)
	return b
}

func scrapeDaemon(t *testing.T) string {
	t.Helper()
	bin := binary(t)
	m, err := sim.Build(filepath.Join(t.TempDir(), "machine"), sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 4})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-served
		m.Close()
	})

	sockDir, err := os.MkdirTemp("", "sp") // unix socket paths are short
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "sp.sock")
	dir := m.Dir()
	// One notifier, so the per-notifier outbox series are in the scrape.
	policy := filepath.Join(t.TempDir(), "selfprotect.yaml")
	require.NoError(t, os.WriteFile(policy, []byte("alerts:\n  notifiers:\n    - name: hook\n      type: exec\n      exec: {command: [/bin/true]}\n"), 0o600))
	cmd := exec.Command(bin, "run", "--metrics-listen", "127.0.0.1:0", "--config", policy,
		"--sysfs", dir+"/sys", "--procfs", dir+"/proc", "--tracefs", dir+"/sys/kernel/tracing",
		"--debugfs", dir+"/sys/kernel/debug", "--devfs", dir+"/dev",
		"--state", filepath.Join(t.TempDir(), "state"), "--socket", sock)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", log.String())
		}
	})

	var url string
	require.Eventually(t, func() bool {
		resp, err := daemon.Call(sock, daemon.Request{Command: "status"}, time.Second)
		if err != nil || !resp.Status.Armed || !strings.HasPrefix(resp.Status.Metrics, "http://") {
			return false
		}
		url = resp.Status.Metrics
		return true
	}, 20*time.Second, 50*time.Millisecond, "daemon not armed with a metrics endpoint")

	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	require.NoError(t, m.InjectCacheCE(3, 1))
	var text string
	require.Eventually(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return false
		}
		text = string(body)
		return strings.Contains(text, `selfprotect_actions_total{kind="soft-offline",outcome="isolated"} 1`) &&
			strings.Contains(text, `selfprotect_cases{`)
	}, 20*time.Second, 100*time.Millisecond, "no isolation in the metrics")
	return text
}
