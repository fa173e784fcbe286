package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/internal/peertest"
	"github.com/selfprotect/selfprotect/sim"
)

// An unarmed daemon announces it once, to a webhook and to a real
// Alertmanager; restarted while still unarmed it does not announce it
// again; restarted with its sources back it clears it, and Alertmanager
// resolves it.
func TestAlertsUnarmedAcrossRestarts(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	hook := newReceiver(t, "ok")
	amURL := peertest.Alertmanager(t, peertest.FreePort(t, "tcp"))
	policy := alertsPolicy(webhookYAML("hook", hook.srv.URL, ""),
		fmt.Sprintf("    - name: am\n      type: alertmanager\n      alertmanager: {url: %q}\n", amURL))
	noTrace := []string{"--tracefs", filepath.Join(t.TempDir(), "no-tracefs")}
	unarmed := func() []alert.Alert { return byTransition(hook.alerts(), "")[alert.Unarmed] }
	cleared := func() []alert.Alert { return byTransition(hook.alerts(), "")[alert.UnarmedCleared] }
	firing := func() int { return amFiring(t, amURL, "SelfprotectUnarmed") }

	// drained: the daemon's first health check has run (status lists the
	// problem: any alert it raised is queued by then) and its outbox is
	// empty, so the receivers have all they will get.
	drained := func(d *daemonProc) func() bool {
		return func() bool {
			resp, err := daemon.Call(d.socket, daemon.Request{Command: "status"}, time.Second)
			if err != nil || len(resp.Status.Problems) == 0 || len(resp.Status.Alerts) != 2 {
				return false
			}
			for _, n := range resp.Status.Alerts {
				if n.Pending != 0 || n.InFlight != 0 {
					return false
				}
			}
			return true
		}
	}
	// ids counts distinct alert IDs: a send cut short by a stop is sent
	// again after the restart, and receivers drop the copy by its ID.
	ids := func(as []alert.Alert) map[string]bool {
		out := map[string]bool{}
		for _, a := range as {
			out[a.ID] = true
		}
		return out
	}

	d := launchDaemon(t, m, daemonOpts{policy: policy, args: noTrace})
	require.Eventually(t, func() bool { return len(unarmed()) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return firing() == 1 }, 10*time.Second, 50*time.Millisecond, "Alertmanager shows it")
	require.Eventually(t, drained(d), 10*time.Second, 20*time.Millisecond)
	first := unarmed()[0]
	d.stop()

	// Still unarmed after the restart.
	d2 := launchDaemon(t, m, daemonOpts{policy: policy, args: noTrace, state: d.state})
	require.Eventually(t, drained(d2), 10*time.Second, 20*time.Millisecond)
	require.Equal(t, map[string]bool{first.ID: true}, ids(unarmed()), "a restart during the problem does not announce it again")
	require.Empty(t, cleared())
	d2.stop()

	d3 := startDaemon(t, m, daemonOpts{policy: policy, state: d.state})
	require.Eventually(t, func() bool { return len(cleared()) >= 1 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, first.Case, cleared()[0].Case)
	require.Equal(t, map[string]bool{first.ID: true}, ids(unarmed()))
	require.Len(t, ids(cleared()), 1)
	require.Eventually(t, func() bool { return firing() == 0 }, 10*time.Second, 50*time.Millisecond, "Alertmanager resolves it")
	_, code := d3.cli("status")
	require.Equal(t, 0, code)
}

// amFiring counts the active alerts of one alertname in Alertmanager.
func amFiring(t *testing.T, base, name string) int {
	t.Helper()
	n := 0
	for _, a := range amActive(t, base) {
		if a.Labels["alertname"] == name {
			n++
		}
	}
	return n
}

type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

// amActive lists Alertmanager's active alerts.
func amActive(t *testing.T, base string) []amAlert {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts?active=true")
	require.NoError(t, err)
	defer resp.Body.Close()
	var as []amAlert
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&as))
	var out []amAlert
	for _, a := range as {
		if a.Status.State == "active" {
			out = append(out, a)
		}
	}
	return out
}

// A CPU offline that leaves too few CPUs online for another one raises
// budget-exhausted with its isolated alert, not only at the next refusal;
// one that leaves room does not.
func TestAlertsCPUBudgetExhaustedByOffline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cpus      int
		exhausted bool
	}{
		{4, true},  // 3 stay online; one more would leave 2 < ceil(0.75 × 4)
		{8, false}, // 7 stay; one more leaves 6 = ceil(0.75 × 8)
	} {
		t.Run(fmt.Sprintf("%d CPUs", tc.cpus), func(t *testing.T) {
			t.Parallel()
			m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: tc.cpus})
			hook := newReceiver(t, "ok")
			d := startDaemon(t, m, daemonOpts{policy: alertsPolicy(webhookYAML("hook", hook.srv.URL, ""))})
			require.NoError(t, m.InjectCacheCE(2, 5))
			require.Eventually(t, func() bool { return len(byTransition(hook.alerts(), "")[alert.Isolated]) == 1 },
				10*time.Second, 20*time.Millisecond)
			// The isolated alert and any budget-exhausted are queued in one
			// transaction: once the outbox is empty, both arrived.
			require.Eventually(t, func() bool {
				st := d.status()
				return len(st.Alerts) == 1 && st.Alerts[0].Pending == 0 && st.Alerts[0].InFlight == 0
			}, 10*time.Second, 20*time.Millisecond)
			iso := byTransition(hook.alerts(), "")[alert.Isolated][0]
			require.Equal(t, "cpu:2", iso.Suspect)
			ex := byTransition(hook.alerts(), "")[alert.BudgetExhausted]
			if !tc.exhausted {
				require.Empty(t, ex)
				return
			}
			require.Len(t, ex, 1)
			require.Contains(t, ex[0].Summary, "min_online_cpu_fraction")
			require.Contains(t, ex[0].Summary, "after case "+iso.Case)
			require.Equal(t, "cpu:2", ex[0].Suspect)
		})
	}
}

// Dry-run announces what enforcing would do: a would-isolate alert after
// diagnosed, for a page and for a CPU, while nothing is written to the
// kernel.
func TestAlertsDryRunWouldIsolate(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	hook := newReceiver(t, "ok")
	d := startDaemon(t, m, daemonOpts{policy: "mode: dry-run\n" + alertsPolicy(webhookYAML("hook", hook.srv.URL, ""))})
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	require.NoError(t, m.InjectCacheCE(2, 5))
	would := func() []alert.Alert { return byTransition(hook.alerts(), "")[alert.WouldIsolate] }
	require.Eventually(t, func() bool { return len(would()) == 2 }, 10*time.Second, 20*time.Millisecond)
	require.Empty(t, m.Offlined())
	require.Equal(t, "0-3", m.read(t, "sys/devices/system/cpu/online"))
	cases := d.faulty()
	require.Len(t, cases, 2)
	for _, c := range cases {
		require.Equal(t, fault.CaseOpen, c.State, "dry-run leaves the case open")
		bt := byTransition(hook.alerts(), c.ID)
		require.Len(t, bt[alert.Diagnosed], 1, c.Suspect)
		require.Len(t, bt[alert.WouldIsolate], 1, c.Suspect)
		require.Empty(t, bt[alert.Isolated], c.Suspect)
		w := bt[alert.WouldIsolate][0]
		require.Equal(t, string(c.Suspect), w.Suspect)
		require.Contains(t, w.Summary, "dry-run: would ")
		require.Contains(t, w.Summary, string(c.Suspect))
		require.Empty(t, w.Undo)
	}
}
