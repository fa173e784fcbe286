package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/alert/snmp"
	"github.com/selfprotect/selfprotect/internal/peertest"
	"github.com/selfprotect/selfprotect/jsonout"
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
	for _, msg := range receivedMail(t, mailDir) {
		counts["mail"][msg.header.Get("X-Selfprotect-Alert-Id")]++
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

// smtpMessage is one mail the SMTP peer accepted: its envelope recipients,
// its header, and its body with the transfer encoding undone.
type smtpMessage struct {
	rcpt   []string
	header mail.Header
	body   string
}

// receivedMail reads what peertest.SMTP wrote to dir. The peer renames
// each .rcpt into place before its .eml, so a listed mail is complete.
func receivedMail(t *testing.T, dir string) []smtpMessage {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	require.NoError(t, err)
	var out []smtpMessage
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		require.NoError(t, err, f)
		var r io.Reader = msg.Body
		if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			r = quotedprintable.NewReader(r)
		}
		text, err := io.ReadAll(r)
		require.NoError(t, err, f)
		rcpt, err := os.ReadFile(strings.TrimSuffix(f, ".eml") + ".rcpt")
		require.NoError(t, err)
		// SMTP ends lines with CRLF; the assertions read lines.
		body := strings.ReplaceAll(string(text), "\r\n", "\n")
		out = append(out, smtpMessage{rcpt: strings.Fields(string(rcpt)), header: msg.Header, body: body})
	}
	return out
}

// notifierStatus is the named notifier's line of the daemon's status.
func notifierStatus(t *testing.T, d *daemonProc, name string) alert.NotifierStatus {
	t.Helper()
	for _, n := range d.status().Alerts {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("status lists no notifier %q", name)
	return alert.NotifierStatus{}
}

// waitsInOutbox waits until the notifier has failed and holds its alerts
// (at least two pending, none given up), has sent none, and names
// wantErr as its last error; it returns that status.
func waitsInOutbox(t *testing.T, d *daemonProc, name, wantErr, why string) alert.NotifierStatus {
	t.Helper()
	require.Eventually(t, func() bool {
		n := notifierStatus(t, d, name)
		return n.Failed > 0 && n.Pending >= 2 && n.Dead == 0
	}, 20*time.Second, 50*time.Millisecond, why)
	n := notifierStatus(t, d, name)
	require.Zero(t, n.Sent)
	require.Contains(t, n.LastError, wantErr)
	return n
}

// isolateOnePage has the daemon isolate one page on m and returns its
// case.
func isolateOnePage(t *testing.T, m *machine, d *daemonProc) jsonout.Case {
	t.Helper()
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	d.settle(300 * time.Millisecond)
	require.Len(t, m.Offlined(), 1)
	cases := d.faulty()
	require.Len(t, cases, 1)
	return cases[0]
}

// trapRecord is snmptrapd's log line for the notification that names
// caseID in spCaseUUID, "" while there is none. snmptrapd decodes it with
// our MIB, so the names are its reading of what arrived, not ours.
func trapRecord(t *testing.T, log, notification, caseID string) string {
	t.Helper()
	data, err := os.ReadFile(log)
	require.NoError(t, err)
	for _, r := range strings.Split(string(data), "\n") {
		if strings.Contains(r, "SNMPv2-MIB::snmpTrapOID.0 = OID: SELFPROTECT-MIB::"+notification+"\t") &&
			strings.Contains(r, "SELFPROTECT-MIB::spCaseUUID.0 = STRING: "+caseID+"\t") {
			return r
		}
	}
	return ""
}

// SNMPv3 authPriv through the daemon: a page isolated on the simulator
// reaches one snmptrapd as a v3 trap and another as a v3 inform, each
// decoded there as spCaseIsolated naming the case. Neither manager takes
// v2c (no authCommunity). The trap manager knows our user only under the
// engine ID the daemon derives from its host name, as the README tells
// operators to configure it; the inform manager only under its own engine
// ID, which the daemon has to discover. An inform under a wrong auth key
// is refused by snmptrapd and stays in the outbox: the managers do check
// the keys, so the deliveries above prove the daemon's are right.
func TestAlertsRealPeersSNMPv3(t *testing.T) {
	t.Parallel()
	const user, authKey, privKey = "selfprotect", "auth-passphrase-1", "priv-passphrase-1"
	trapPort, informPort := peertest.FreePort(t, "udp"), peertest.FreePort(t, "udp")
	trapLog := peertest.Snmptrapd(t, trapPort, fmt.Sprintf("createUser -e 0x%x %s SHA %s AES %s\nauthUser log %s\n",
		snmp.EngineID("sim-host"), user, authKey, privKey, user))
	informLog := peertest.Snmptrapd(t, informPort, fmt.Sprintf("createUser %s SHA %s AES %s\nauthUser log %s\n",
		user, authKey, privKey, user))
	v3 := func(name string, port int, mode, auth string) string {
		return fmt.Sprintf("    - name: %s\n      type: snmp\n      timeout: 5s\n      snmp: {target: \"127.0.0.1:%d\", version: v3, mode: %s, "+
			"user: %s, auth_protocol: SHA, auth_key: %s, priv_protocol: AES, priv_key: %s, retries: 1}\n",
			name, port, mode, user, auth, privKey)
	}
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{policy: alertsPolicy(
		v3("v3-trap", trapPort, "trap", authKey),
		v3("v3-inform", informPort, "inform", authKey),
		v3("v3-wrong-key", informPort, "inform", "not-the-auth-key"),
	)})
	c := isolateOnePage(t, m, d)

	for name, log := range map[string]string{"trap": trapLog, "inform": informLog} {
		var record string
		require.Eventually(t, func() bool {
			record = trapRecord(t, log, "spCaseIsolated", c.ID)
			return record != ""
		}, 20*time.Second, 50*time.Millisecond, "snmptrapd logged no v3 %s naming case %s", name, c.ID)
		for _, want := range []string{
			"SELFPROTECT-MIB::spAlertId.0 = STRING: " + alert.StableID("sim-host", c.ID, alert.Isolated) + "\t",
			"SELFPROTECT-MIB::spTransition.0 = STRING: isolated\t",
			"SELFPROTECT-MIB::spResource.0 = STRING: " + string(c.Suspect) + "\t",
			"SELFPROTECT-MIB::spHost.0 = STRING: sim-host\t",
		} {
			require.Contains(t, record, want, name)
		}
	}
	// An inform is sent only when acknowledged: its outbox empties.
	require.Eventually(t, func() bool {
		n := notifierStatus(t, d, "v3-inform")
		return n.Pending == 0 && n.InFlight == 0 && n.Sent >= 2
	}, 20*time.Second, 50*time.Millisecond, "the v3 informs were acknowledged")
	n := waitsInOutbox(t, d, "v3-wrong-key", "snmp v3 inform", "the informs under a wrong key wait in the outbox")
	require.NotContains(t, n.LastError, "not-the-auth-key")
}

// Implicit TLS (SMTPS: TLS from the first byte, as on port 465) through
// the daemon: a page isolated on the simulator reaches a real SMTP server
// that speaks nothing but TLS, as mail naming the case. A second notifier
// at the same server trusting another CA sends nothing: its alerts stay in
// the outbox to be retried, with the certificate error in status.
func TestAlertsRealPeersImplicitTLSMail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := peertest.NewPKI(t, dir)
	otherDir := filepath.Join(dir, "other")
	require.NoError(t, os.Mkdir(otherDir, 0o700))
	other := peertest.NewPKI(t, otherDir)
	port := peertest.FreePort(t, "tcp")
	mailDir := peertest.SMTP(t, pki, port, peertest.SMTPOptions{Implicit: true})
	smtps := func(name, caFile, to string) string {
		return fmt.Sprintf("    - name: %s\n      type: email\n      timeout: 10s\n      email: {host: 127.0.0.1, port: %d, tls: tls, "+
			"ca_file: %s, from: selfprotect@example.net, to: [%s]}\n", name, port, caFile, to)
	}
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{policy: alertsPolicy(
		smtps("smtps", pki.CAFile, "ops@example.net"),
		smtps("smtps-other-ca", other.CAFile, "other-ca@example.net"),
	)})
	c := isolateOnePage(t, m, d)

	isolated := func() []smtpMessage {
		var out []smtpMessage
		for _, msg := range receivedMail(t, mailDir) {
			if msg.header.Get("X-Selfprotect-Case") == c.ID && msg.header.Get("X-Selfprotect-Transition") == "isolated" {
				out = append(out, msg)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(isolated()) > 0 }, 20*time.Second, 50*time.Millisecond,
		"no mail about case %s's isolation arrived over implicit TLS", c.ID)
	msg := isolated()[0]
	require.Equal(t, []string{"ops@example.net"}, msg.rcpt)
	require.Equal(t, alert.StableID("sim-host", c.ID, alert.Isolated), msg.header.Get("X-Selfprotect-Alert-Id"))
	require.Contains(t, msg.header.Get("Subject"), string(c.Suspect))
	require.Regexp(t, `(?m)^Case: +`+regexp.QuoteMeta(c.ID)+`$`, msg.body)

	waitsInOutbox(t, d, "smtps-other-ca", "certificate signed by unknown authority",
		"the alerts for a relay whose certificate does not verify wait in the outbox")
	// A failed handshake ends the connection before any SMTP command, so
	// no mail the peer took can be this notifier's.
	for _, msg := range receivedMail(t, mailDir) {
		require.NotContains(t, msg.rcpt, "other-ca@example.net", "mail went to a relay whose certificate does not verify")
	}
	require.Eventually(t, func() bool {
		n := notifierStatus(t, d, "smtps")
		return n.Pending == 0 && n.InFlight == 0 && n.Sent >= 2
	}, 20*time.Second, 50*time.Millisecond, "the trusted notifier's outbox drained")
}
