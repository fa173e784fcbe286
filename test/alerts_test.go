package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/internal/peertest"
	"github.com/selfprotect/selfprotect/sim"
	"github.com/selfprotect/selfprotect/store"
)

// receiver is a webhook endpoint on loopback that records what it got, by
// alert ID, and can play down (503) or hang.
type receiver struct {
	srv  *httptest.Server
	mode atomic.Value // "ok", "down", "hang", "unauthorized"
	hang chan struct{}

	mu   sync.Mutex
	got  []alert.Alert
	auth []string
}

func newReceiver(t *testing.T, mode string) *receiver {
	r := &receiver{hang: make(chan struct{})}
	r.mode.Store(mode)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch r.mode.Load().(string) {
		case "down":
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		case "unauthorized":
			// Echoing the credential is what careless peers do: it must
			// still not reach status or the log.
			http.Error(w, "bad token: "+req.Header.Get("Authorization"), http.StatusUnauthorized)
			return
		case "hang":
			select {
			case <-r.hang:
			case <-req.Context().Done():
			}
			return
		}
		var p struct {
			Alert alert.Alert `json:"alert"`
		}
		body, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(body, &p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, p.Alert)
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		r.mu.Unlock()
	}))
	t.Cleanup(func() { close(r.hang); r.srv.Close() })
	return r
}

func (r *receiver) alerts() []alert.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]alert.Alert(nil), r.got...)
}

// execHook is an exec notifier that writes each alert's JSON to a file of
// its own in dir, or fails while dir/down exists.
type execHook struct{ dir string }

func newExecHook(t *testing.T) execHook {
	dir := filepath.Join(t.TempDir(), "hook")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return execHook{dir: dir}
}

func (h execHook) yaml(name string) string {
	script := fmt.Sprintf(`if [ -e %[1]s/down ]; then echo receiver down >&2; exit 3; fi; cat > %[1]s/"$SELFPROTECT_ALERT_ID.$$.json"`, h.dir)
	return fmt.Sprintf("    - name: %s\n      type: exec\n      exec:\n        command: [/bin/sh, -c, %q]\n", name, script)
}

func (h execHook) setDown(t *testing.T, down bool) {
	p := filepath.Join(h.dir, "down")
	if down {
		require.NoError(t, os.WriteFile(p, nil, 0o644))
	} else {
		require.NoError(t, os.Remove(p))
	}
}

func (h execHook) alerts(t *testing.T) []alert.Alert {
	files, err := filepath.Glob(filepath.Join(h.dir, "*.json"))
	require.NoError(t, err)
	var out []alert.Alert
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var a alert.Alert
		if json.Unmarshal(b, &a) != nil {
			continue // still being written
		}
		out = append(out, a)
	}
	return out
}

func webhookYAML(name, url, extra string) string {
	return fmt.Sprintf("    - name: %s\n      type: webhook\n%s      webhook:\n        url: %s\n", name, extra, url)
}

func alertsPolicy(notifiers ...string) string {
	return "alerts:\n  host: sim-host\n  outbox:\n    initial_backoff: 100ms\n    max_backoff: 500ms\n  notifiers:\n" + strings.Join(notifiers, "")
}

func byTransition(as []alert.Alert, caseID string) map[alert.Transition][]alert.Alert {
	out := map[alert.Transition][]alert.Alert{}
	for _, a := range as {
		if caseID == "" || a.Case == caseID {
			out[a.Transition] = append(out[a.Transition], a)
		}
	}
	return out
}

// A page case reaches a webhook and an exec hook as diagnosed, then
// isolated with the undo command, then repaired: each alert carries the
// case UUID and FRU, and status and /metrics show the notifiers.
func TestAlertsPageCaseLifecycle(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	hook := newReceiver(t, "ok")
	ex := newExecHook(t)
	d := startDaemon(t, m, daemonOpts{policy: alertsPolicy(webhookYAML("hook", hook.srv.URL, ""), ex.yaml("script"))})
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	d.settle(300 * time.Millisecond)
	cases := d.faulty()
	require.Len(t, cases, 1)
	c := cases[0]
	require.Equal(t, fault.Page(0x2d94), c.Suspect)

	for name, got := range map[string]func() []alert.Alert{"webhook": hook.alerts, "exec": func() []alert.Alert { return ex.alerts(t) }} {
		require.Eventually(t, func() bool {
			bt := byTransition(got(), c.ID)
			return len(bt[alert.Diagnosed]) == 1 && len(bt[alert.Isolated]) == 1
		}, 10*time.Second, 20*time.Millisecond, name)
		bt := byTransition(got(), c.ID)
		iso := bt[alert.Isolated][0]
		require.Equal(t, "sim-host", iso.Host, name)
		require.Equal(t, string(c.Suspect), iso.Suspect, name)
		require.Equal(t, c.FRU, iso.FRU, name)
		require.Contains(t, iso.Undo, "0x2d94", name)
		require.Equal(t, alert.StableID("sim-host", c.ID, alert.Isolated), iso.ID, name)
		require.Empty(t, bt[alert.Diagnosed][0].Undo, name)
		require.Positive(t, bt[alert.Diagnosed][0].EvidenceCount, name)
	}

	out, code := d.cli("repair", c.ID[:8])
	require.Equal(t, 0, code, out)
	require.Eventually(t, func() bool { return len(byTransition(hook.alerts(), c.ID)[alert.Repaired]) == 1 },
		10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(byTransition(ex.alerts(t), c.ID)[alert.Repaired]) == 1 },
		10*time.Second, 20*time.Millisecond)

	// A receiver has an alert a moment before the daemon records it sent.
	var st *daemon.Status
	require.Eventually(t, func() bool {
		st = d.status()
		for _, n := range st.Alerts {
			if n.Pending != 0 || n.InFlight != 0 {
				return false
			}
		}
		return len(st.Alerts) == 2
	}, 10*time.Second, 20*time.Millisecond)
	for _, n := range st.Alerts {
		require.GreaterOrEqual(t, n.Sent, int64(3), n.Name)
		require.False(t, n.LastSuccess.IsZero(), n.Name)
	}
	out, code = d.cli("status")
	require.Equal(t, 0, code, out)
	require.Regexp(t, `hook +webhook +0 queued`, out)
	resp, err := http.Get(strings.TrimSuffix(st.Metrics, "/metrics") + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `selfprotect_alert_queue_depth{notifier="hook"} 0`)
	require.Regexp(t, `selfprotect_alert_sent_total\{notifier="script"\} [3-9]`, string(body))
}

// A storm is one alert when it starts and one when it ends, however many
// errors it brings. The storm rate is low because the daemon rates records
// as it receives them, and a loaded host reads them below the built-in
// 2000/s. The health check runs once a minute here: the storm ends on the
// one-second tick the daemon runs only while storming.
func TestAlertsStormIsOneAlert(t *testing.T) {
	t.Parallel()
	m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "amd", CPUs: 4, MemoryMB: 1024})
	hook := newReceiver(t, "ok")
	d := startDaemon(t, m, daemonOpts{health: "1m", policy: "rules:\n  storm: {rate: 100, quiet: 1s}\n" + alertsPolicy(webhookYAML("hook", hook.srv.URL, ""))})
	const n = 30000
	pages := make([]uint64, 0, n)
	for i := uint64(0); i < n; i++ {
		pages = append(pages, 0x1000000+i*fault.PageSize)
	}
	require.NoError(t, m.Storm(n, pages))
	// Wait for the count itself: a quiet spell of the main loop under load
	// once ended settle with 29 258 counted.
	require.Eventually(t, func() bool { return d.status().Events.Counted >= n }, 60*time.Second, 50*time.Millisecond,
		"the daemon never counted all %d errors", n)
	st := d.settle(300 * time.Millisecond)
	require.Equal(t, uint64(n), st.Events.Counted)
	require.Eventually(t, func() bool { return len(byTransition(hook.alerts(), "")[alert.StormEnded]) == 1 },
		60*time.Second, 50*time.Millisecond)
	bt := byTransition(hook.alerts(), "")
	require.Len(t, bt[alert.StormStarted], 1)
	require.Equal(t, bt[alert.StormStarted][0].Case, bt[alert.StormEnded][0].Case)
	require.Empty(t, bt[alert.Diagnosed], "no alert per error or page during the storm")
	// Only the storm and, at most, the ring buffer losing events under it.
	for tr := range bt {
		require.Contains(t, []alert.Transition{alert.StormStarted, alert.StormEnded, alert.SourceDegraded}, tr)
	}
}

// Receivers down, alerts raised, the daemon SIGKILLed and restarted, the
// receivers back: every alert arrives at every notifier exactly once.
func TestAlertsSurviveOutageAndKill(t *testing.T) {
	t.Parallel()
	m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 4, MemoryMB: 4096})
	hook := newReceiver(t, "down")
	ex := newExecHook(t)
	ex.setDown(t, true)
	// The ten pages share a DIMM: without the DIMM rule they stay ten page
	// cases (its 5 distinct pages would add a replace-DIMM case).
	policy := "budgets: {max_pages_per_dimm: 100}\nrules: {dimm: {enabled: false}}\n" + alertsPolicy(webhookYAML("hook", hook.srv.URL, ""), ex.yaml("script"))
	d := startDaemon(t, m, daemonOpts{policy: policy})
	const pages = 10 // a diagnosed and an isolated alert each
	for i := range pages {
		require.NoError(t, m.InjectMemoryCE(0x10000040+uint64(i)*0x1000000, 2, 1))
	}
	d.settle(300 * time.Millisecond)
	require.Len(t, m.Offlined(), pages)
	require.Eventually(t, func() bool {
		for _, n := range d.status().Alerts {
			if n.Pending < 2*pages || n.Failed == 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "every alert queued and tried")

	require.NoError(t, d.cmd.Process.Signal(syscall.SIGKILL))
	<-d.exited
	want := pendingIDs(t, d.state)
	require.Len(t, want["hook"], 2*pages)
	require.Equal(t, want["hook"], want["script"])

	d2 := startDaemon(t, m, daemonOpts{policy: policy, state: d.state})
	hook.mode.Store("ok")
	ex.setDown(t, false)
	count := func(as []alert.Alert) map[string]int {
		c := map[string]int{}
		for _, a := range as {
			c[a.ID]++
		}
		return c
	}
	for name, got := range map[string]func() []alert.Alert{"hook": hook.alerts, "script": func() []alert.Alert { return ex.alerts(t) }} {
		require.Eventually(t, func() bool {
			c := count(got())
			for id := range want[name] {
				if c[id] == 0 {
					return false
				}
			}
			return true
		}, 20*time.Second, 20*time.Millisecond, name)
	}
	require.Eventually(t, func() bool {
		for _, n := range d2.status().Alerts {
			if n.Pending != 0 || n.InFlight != 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond)
	for name, got := range map[string][]alert.Alert{"hook": hook.alerts(), "script": ex.alerts(t)} {
		for id, n := range count(got) {
			require.Equal(t, 1, n, "%s got alert %s %d times", name, id, n)
		}
	}
}

// pendingIDs reads the undelivered alert IDs per notifier from a stopped
// daemon's store.
func pendingIDs(t *testing.T, state string) map[string]map[string]bool {
	s, err := store.Open(filepath.Join(state, "selfprotect.db"))
	require.NoError(t, err)
	defer s.Close()
	ds, err := s.Deliveries(store.DeliveryPending)
	require.NoError(t, err)
	out := map[string]map[string]bool{}
	for _, d := range ds {
		if out[d.Notifier] == nil {
			out[d.Notifier] = map[string]bool{}
		}
		out[d.Notifier][d.AlertID] = true
	}
	return out
}

// Every notifier hangs: the page is isolated all the same, and the daemon
// still stops promptly.
func TestAlertsNeverBlockIsolation(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	hook := newReceiver(t, "hang")
	hangDir := t.TempDir()
	hang := fmt.Sprintf("    - name: script\n      type: exec\n      timeout: 1h\n      exec:\n        command: [/bin/sh, -c, \"touch %s/started; exec sleep 3600\"]\n", hangDir)
	d := startDaemon(t, m, daemonOpts{policy: alertsPolicy(webhookYAML("hook", hook.srv.URL, "      timeout: 1h\n"), hang)})
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	require.Eventually(t, func() bool { return len(m.Offlined()) == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		cs := d.faulty()
		return len(cs) == 1 && cs[0].State == fault.CaseIsolated
	}, 10*time.Second, 20*time.Millisecond)
	// The sends really are stuck, not done.
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(hangDir, "started"))
		for _, n := range d.status().Alerts {
			if n.InFlight == 0 {
				return false
			}
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	// A second case while the sends of the first still hang is isolated
	// too: no send holds up the action worker.
	require.NoError(t, m.InjectMemoryCE(0x7d94040, 2, 1))
	require.Eventually(t, func() bool { return len(m.Offlined()) == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		cs := d.faulty()
		return len(cs) == 2 && cs[0].State == fault.CaseIsolated && cs[1].State == fault.CaseIsolated
	}, 10*time.Second, 20*time.Millisecond)
	for _, n := range d.status().Alerts {
		require.Zero(t, n.Sent, n.Name)
		require.GreaterOrEqual(t, n.Pending, 4, n.Name)
	}
	d.stop() // fails the test if the daemon does not stop within 10 s
}

// Secrets in the alerts: section never show in check-config, status,
// /metrics or the log, even when a notifier fails with them.
func TestAlertsSecretsNeverShown(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	hook := newReceiver(t, "unauthorized")
	policy := alertsPolicy(fmt.Sprintf("    - name: hook\n      type: webhook\n      webhook:\n        url: %s\n        bearer_token: hunter2-token\n", hook.srv.URL))
	d := startDaemon(t, m, daemonOpts{policy: policy})
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	require.Eventually(t, func() bool {
		for _, n := range d.status().Alerts {
			if n.LastError == "" {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond)
	hook.mode.Store("ok")
	require.Eventually(t, func() bool { return len(hook.alerts()) >= 2 }, 10*time.Second, 20*time.Millisecond)
	hook.mu.Lock()
	require.Equal(t, "Bearer hunter2-token", hook.auth[0], "the secret is used")
	hook.mu.Unlock()

	status, _ := d.cli("status")
	statusJSON, _ := d.cli("status", "--json")
	p := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(p, []byte(policy), 0o644))
	check, code := d.cli("check-config", p)
	require.Equal(t, 0, code, check)
	require.Contains(t, check, "<secret>")
	st := d.status()
	resp, err := http.Get(st.Metrics)
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, status, "last error")
	for what, text := range map[string]string{"status": status, "status --json": statusJSON, "check-config": check,
		"metrics": string(metrics), "log": d.log.String()} {
		require.NotContains(t, text, "hunter2", what)
	}
}

// check-config validates the alerts: section with file and line.
func TestCheckConfigAlertsSection(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(p, []byte("mode: enforce\nalerts:\n  notifiers:\n    - name: hook\n      type: webhook\n      webhook:\n        url: ftp://nowhere\n"), 0o644))
	out, err := exec.Command(binary, "check-config", p).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), p+":7")
	require.NotContains(t, string(out), "effective policy", "nothing is printed for a file with a bad section")

	// Valid YAML but a hook that is not there: the notifiers are built.
	require.NoError(t, os.WriteFile(p, []byte("alerts:\n  notifiers:\n    - name: hook\n      type: exec\n      exec: {command: [/nonexistent/on-alert]}\n"), 0o644))
	out, err = exec.Command(binary, "check-config", p).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), p+":3")
	require.Contains(t, string(out), "/nonexistent/on-alert")
}

// A relative ca_file is read next to the policy file when the command
// runs in /, as the daemon does under systemd, and the echo names the file.
func TestCheckConfigCAFileNextToPolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := peertest.NewPKI(t, dir)
	p := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(p, []byte("alerts:\n  notifiers:\n    - name: mail\n      type: email\n      email: "+
		"{host: 127.0.0.1, tls: tls, ca_file: "+filepath.Base(pki.CAFile)+", from: a@example.net, to: [b@example.net]}\n"), 0o644))
	for _, args := range [][]string{{"check-config", p}, {"alert", "config", "--config", p}} {
		cmd := exec.Command(binary, args...)
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%v: %s", args, out)
		require.Contains(t, string(out), "ca_file: "+pki.CAFile+"\n", args)
	}
}

// `selfprotect demo` shows the alerts going out through its exec hook.
func TestDemoShowsAlerts(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "demo").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Regexp(t, `alert → print-hook: warning diagnosed case=[0-9a-f-]{36} page:0x2d94`, string(out))
	require.Regexp(t, `alert → print-hook: warning isolated case=[0-9a-f-]{36} page:0x2d94 fru=\S+ undo=echo 0x2d94`, string(out))
	require.Regexp(t, `alert → print-hook: warning refused case=[0-9a-f-]{36} cpu:3`, string(out))
	// Step 5's EDAC-only errors open the replace-DIMM case within the step.
	require.Regexp(t, `(?m)^5\. .*\n   case [0-9a-f]{8}  replace-dimm  suspect dimm:mc1/`, string(out))
	require.Regexp(t, `print-hook +exec +0 queued`, string(out))
}

// Tracing switched off behind our back is a source-blind alert, once per
// episode, and its end a source-blind-cleared under the same subject: the
// same problem coming back after it cleared alerts again.
func TestAlertsSourceBlindPerEpisode(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	hook := newReceiver(t, "ok")
	d := startDaemon(t, m, daemonOpts{policy: alertsPolicy(webhookYAML("hook", hook.srv.URL, ""))})
	const on = "sys/kernel/tracing/instances/selfprotect/tracing_on"
	blind := func() []alert.Alert { return byTransition(hook.alerts(), "")[alert.SourceBlind] }
	cleared := func() []alert.Alert { return byTransition(hook.alerts(), "")[alert.SourceBlindCleared] }
	for episode := 1; episode <= 2; episode++ {
		m.write(t, on, "0")
		require.Eventually(t, func() bool { return len(blind()) == episode }, 10*time.Second, 20*time.Millisecond, "episode %d", episode)
		m.write(t, on, "1")
		require.Eventually(t, func() bool { _, code := d.cli("status"); return code == 0 }, 10*time.Second, 20*time.Millisecond)
		require.Eventually(t, func() bool { return len(cleared()) == episode }, 10*time.Second, 20*time.Millisecond, "episode %d cleared", episode)
	}
	bs, cs := blind(), cleared()
	require.Contains(t, bs[0].Summary, "tracing_on is 0")
	require.Equal(t, alert.SeverityCritical, bs[0].Severity)
	require.NotEqual(t, bs[0].ID, bs[1].ID)
	for i := range bs {
		require.Equal(t, bs[i].Case, cs[i].Case, "a clear names the episode it ends")
		require.Equal(t, alert.SeverityInfo, cs[i].Severity)
		require.Contains(t, cs[i].Summary, "tracing_on is 0")
	}
}

// A full outbox drops, counts the drop in /metrics and queues one
// outbox-overflow alert; isolation goes on.
func TestAlertsOutboxOverflow(t *testing.T) {
	t.Parallel()
	m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 4, MemoryMB: 4096})
	hook := newReceiver(t, "down")
	policy := "budgets: {max_pages_per_dimm: 100}\n" + strings.Replace(alertsPolicy(webhookYAML("hook", hook.srv.URL, "")),
		"    initial_backoff: 100ms\n", "    initial_backoff: 100ms\n    max_pending: 3\n", 1)
	d := startDaemon(t, m, daemonOpts{policy: policy})
	for i := range 4 {
		require.NoError(t, m.InjectMemoryCE(0x10000040+uint64(i)*0x1000000, 2, 1))
	}
	d.settle(300 * time.Millisecond)
	require.Len(t, m.Offlined(), 4)
	st := d.status()
	require.Len(t, st.Alerts, 1)
	require.Equal(t, 4, st.Alerts[0].Pending, "3 alerts and the overflow alert")
	require.Equal(t, int64(5), st.Alerts[0].Dropped)
	resp, err := http.Get(st.Metrics)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `selfprotect_alert_dropped_total{notifier="hook"} 5`)
	require.Contains(t, d.log.String(), "alert outbox full")
	hook.mode.Store("ok")
	require.Eventually(t, func() bool { return len(byTransition(hook.alerts(), "")[alert.OutboxOverflow]) == 1 },
		10*time.Second, 20*time.Millisecond)
}

// SIGHUP re-reads the alerts: section; a broken one keeps the running
// notifiers.
func TestAlertsReload(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	first, second := newReceiver(t, "ok"), newReceiver(t, "ok")
	p := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(p, []byte(alertsPolicy(webhookYAML("first", first.srv.URL, ""))), 0o644))
	d := startDaemon(t, m, daemonOpts{args: []string{"--config", p}})

	require.NoError(t, os.WriteFile(p, []byte(alertsPolicy("    - name: broken\n      type: pigeon\n")), 0o644))
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(d.log.String(), "alerts reload failed") }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	require.Eventually(t, func() bool { return len(first.alerts()) == 2 }, 10*time.Second, 20*time.Millisecond, "the running notifier stays")

	require.NoError(t, os.WriteFile(p, []byte(alertsPolicy(webhookYAML("second", second.srv.URL, ""))), 0o644))
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		st := d.status()
		return len(st.Alerts) == 1 && st.Alerts[0].Name == "second"
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, m.InjectMemoryCE(0x7d94040, 2, 1))
	require.Eventually(t, func() bool { return len(second.alerts()) == 2 }, 10*time.Second, 20*time.Millisecond)
	require.Len(t, first.alerts(), 2)
}

// The isolation that uses a page budget up raises budget-exhausted at
// once; the refusal that follows does not raise it again the same day.
func TestAlertsBudgetExhausted(t *testing.T) {
	t.Parallel()
	m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 4, MemoryMB: 1024})
	hook := newReceiver(t, "ok")
	// 0.001% of 262144 pages: two pages may be retired.
	d := startDaemon(t, m, daemonOpts{policy: "budgets: {max_ram_retired_percent: 0.001}\n" + alertsPolicy(webhookYAML("hook", hook.srv.URL, ""))})
	exhausted := func() []alert.Alert { return byTransition(hook.alerts(), "")[alert.BudgetExhausted] }
	require.NoError(t, m.InjectMemoryCE(0x10000040, 2, 1))
	d.settle(200 * time.Millisecond)
	require.Eventually(t, func() bool { return len(byTransition(hook.alerts(), "")[alert.Isolated]) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Empty(t, exhausted())
	require.NoError(t, m.InjectMemoryCE(0x20000040, 2, 1))
	require.Eventually(t, func() bool { return len(exhausted()) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Len(t, m.Offlined(), 2)
	require.Contains(t, exhausted()[0].Summary, "max_ram_retired_percent")
	require.NoError(t, m.InjectMemoryCE(0x30000040, 2, 1))
	require.Eventually(t, func() bool { return len(byTransition(hook.alerts(), "")[alert.Refused]) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Len(t, m.Offlined(), 2)
	d.settle(200 * time.Millisecond)
	require.Len(t, exhausted(), 1, "one budget-exhausted per budget and day")
}

// A daemon with no working source says so in an unarmed alert.
func TestAlertsUnarmed(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	hook := newReceiver(t, "ok")
	launchDaemon(t, m, daemonOpts{policy: alertsPolicy(webhookYAML("hook", hook.srv.URL, "")),
		args: []string{"--tracefs", filepath.Join(t.TempDir(), "no-tracefs")}})
	require.Eventually(t, func() bool { return len(byTransition(hook.alerts(), "")[alert.Unarmed]) == 1 },
		10*time.Second, 20*time.Millisecond)
	a := byTransition(hook.alerts(), "")[alert.Unarmed][0]
	require.Equal(t, alert.SeverityCritical, a.Severity)
	require.Contains(t, a.Summary, "no event source is armed")
}
