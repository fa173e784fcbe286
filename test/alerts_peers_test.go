package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/internal/peertest"
	"github.com/selfprotect/selfprotect/sim"
)

// The outage, at the daemon: a real SMTP server (STARTTLS, our CA),
// snmptrapd taking v2c informs with our MIB, Alertmanager, a webhook and an
// exec hook are all down while ten page cases raise twenty alerts; the
// daemon is SIGKILLed and restarted, the peers come back, and every alert
// reaches every notifier exactly once (counted by its stable ID).
// Alertmanager keys alerts by labels, so there each case shows once,
// firing as isolated, and resolves after `repair`.
func TestAlertsRealPeersOutageKillRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := peertest.NewPKI(t, dir)
	smtpPort, amPort := peertest.FreePort(t, "tcp"), peertest.FreePort(t, "tcp")
	trapPort := peertest.FreePort(t, "udp")
	hook := newReceiver(t, "down")
	ex := newExecHook(t)
	ex.setDown(t, true)
	// The ten pages share a DIMM: without the DIMM rule they stay ten page
	// cases (its 5 distinct pages would add a replace-DIMM case).
	policy := "budgets: {max_pages_per_dimm: 100}\nrules: {dimm: {enabled: false}}\n" + alertsPolicy(
		fmt.Sprintf("    - name: mail\n      type: email\n      timeout: 10s\n      email: {host: 127.0.0.1, port: %d, ca_file: %s, from: selfprotect@example.net, to: [ops@example.net]}\n", smtpPort, pki.CAFile),
		fmt.Sprintf("    - name: nms\n      type: snmp\n      timeout: 5s\n      snmp: {target: \"127.0.0.1:%d\", mode: inform, community: public, retries: 1}\n", trapPort),
		fmt.Sprintf("    - name: am\n      type: alertmanager\n      alertmanager: {url: \"http://127.0.0.1:%d\"}\n", amPort),
		webhookYAML("hook", hook.srv.URL, ""),
		ex.yaml("script"),
	)
	m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 4, MemoryMB: 4096})
	d := startDaemon(t, m, daemonOpts{policy: policy})
	const pages = 10
	for i := range pages {
		require.NoError(t, m.InjectMemoryCE(0x10000040+uint64(i)*0x1000000, 2, 1))
	}
	d.settle(300 * time.Millisecond)
	require.Len(t, m.Offlined(), pages, "isolation does not wait for the notifiers")
	require.Eventually(t, func() bool {
		st := d.status()
		for _, n := range st.Alerts {
			if n.Pending < 2*pages || n.Failed == 0 {
				return false
			}
		}
		return len(st.Alerts) == 5
	}, 30*time.Second, 50*time.Millisecond, "every alert queued and tried at every notifier")
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGKILL))
	<-d.exited
	want := pendingIDs(t, d.state)
	require.Len(t, want, 5)
	for name, ids := range want {
		require.Len(t, ids, 2*pages, name)
		require.Equal(t, want["hook"], ids, name)
	}

	// The peers come back; so does the daemon.
	mailDir := peertest.SMTP(t, pki, smtpPort, peertest.SMTPOptions{})
	trapLog := peertest.Snmptrapd(t, trapPort, "authCommunity log public\n")
	amURL := peertest.Alertmanager(t, amPort)
	hook.mode.Store("ok")
	ex.setDown(t, false)
	d2 := startDaemon(t, m, daemonOpts{policy: policy, state: d.state})
	require.Eventually(t, func() bool {
		st := d2.status()
		for _, n := range st.Alerts {
			if n.Pending != 0 || n.InFlight != 0 {
				return false
			}
		}
		return len(st.Alerts) == 5
	}, 60*time.Second, 50*time.Millisecond, "the outbox drained")

	counts := map[string]map[string]int{"mail": {}, "nms": {}, "hook": {}, "script": {}}
	files, err := filepath.Glob(filepath.Join(mailDir, "*.eml"))
	require.NoError(t, err)
	for _, f := range files {
		fh, err := os.Open(f)
		require.NoError(t, err)
		msg, err := mail.ReadMessage(fh)
		require.NoError(t, err)
		fh.Close()
		counts["mail"][msg.Header.Get("X-Selfprotect-Alert-Id")]++
	}
	traps, err := os.ReadFile(trapLog)
	require.NoError(t, err)
	for _, m := range regexp.MustCompile(`spAlertId\.0 = STRING: (\S+)`).FindAllStringSubmatch(string(traps), -1) {
		counts["nms"][m[1]]++
	}
	for _, a := range hook.alerts() {
		counts["hook"][a.ID]++
	}
	for _, a := range ex.alerts(t) {
		counts["script"][a.ID]++
	}
	for name, got := range counts {
		for id := range want[name] {
			require.Equal(t, 1, got[id], "%s got alert %s %d times", name, id, got[id])
		}
		for id, n := range got {
			require.Equal(t, 1, n, "%s got alert %s %d times", name, id, n)
		}
	}

	cases := d2.faulty()
	require.Len(t, cases, pages)
	firing := amCases(t, amURL)
	for _, c := range cases {
		require.Equal(t, "isolated", firing[c.ID], "case %s in Alertmanager", c.ID)
	}
	out, code := d2.cli("repair", cases[0].ID[:8])
	require.Equal(t, 0, code, out)
	require.Eventually(t, func() bool { _, open := amCases(t, amURL)[cases[0].ID]; return !open },
		20*time.Second, 50*time.Millisecond, "Alertmanager resolves the repaired case")
	require.Len(t, amCases(t, amURL), pages-1)
}

// amCases maps each case Alertmanager shows active to the transition of
// its alert.
func amCases(t *testing.T, base string) map[string]string {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts?active=true")
	require.NoError(t, err)
	defer resp.Body.Close()
	var as []struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		Status      struct {
			State string `json:"state"`
		} `json:"status"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&as))
	out := map[string]string{}
	for _, a := range as {
		if a.Status.State == "active" && a.Labels["alertname"] == "SelfprotectCase" {
			out[a.Labels["case"]] = a.Annotations["transition"]
		}
	}
	return out
}
