package snmp

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/internal/peertest"
)

func TestMIBPassesSmilint(t *testing.T) {
	smilint := peertest.Need(t, "smilint", "Debian package smitools")
	cmd := exec.Command(smilint, "-l", "6", peertest.MIBFile())
	cmd.Env = append(os.Environ(), "SMIPATH="+peertest.MIBDir(t))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "smilint -l 6 reports problems")
}

// TestMIBMatchesCode keeps the MIB's sub-identifiers and the notifier's
// in step.
func TestMIBMatchesCode(t *testing.T) {
	mib, err := os.ReadFile(peertest.MIBFile())
	require.NoError(t, err)
	notif := regexp.MustCompile(`(?s)(\w+)\s+NOTIFICATION-TYPE.*?::=\s*\{\s*spNotifications\s+(\d+)\s*\}`)
	got := map[string]int{}
	for _, m := range notif.FindAllStringSubmatch(string(mib), -1) {
		got[m[1]], _ = strconv.Atoi(m[2])
	}
	want := map[string]int{}
	for i, tr := range alert.Transitions {
		name, ok := Notifications[tr]
		require.True(t, ok, "transition %s has no notification", tr)
		want[name] = i + 1
	}
	require.Equal(t, want, got)

	objRE := regexp.MustCompile(`(?s)(\w+)\s+OBJECT-TYPE.*?::=\s*\{\s*spObjects\s+(\d+)\s*\}`)
	gotObj := map[int]string{}
	for _, m := range objRE.FindAllStringSubmatch(string(mib), -1) {
		id, _ := strconv.Atoi(m[2])
		gotObj[id] = m[1]
	}
	require.Equal(t, Objects, gotObj)
	require.Contains(t, string(mib), "::= { enterprises 32473 }")
	require.Equal(t, "1.3.6.1.4.1.32473", alert.DefaultRootOID)
}

const (
	user     = "selfprotect"
	authKey  = "auth-passphrase-1"
	privKey  = "priv-passphrase-1"
	hostName = "db-7"
)

type trapd struct {
	port int
	log  string
}

// startTrapd runs Debian's snmptrapd with our MIB, accepting community
// "public" and the v3 user under both our engine ID (traps) and its own
// (informs).
func startTrapd(t *testing.T) trapd {
	t.Helper()
	port := peertest.FreePort(t, "udp")
	log := peertest.Snmptrapd(t, port, fmt.Sprintf(`authCommunity log public
createUser -e 0x%s %s SHA %s AES %s
createUser %s SHA %s AES %s
authUser log %s
`, hex.EncodeToString(EngineID(hostName)), user, authKey, privKey, user, authKey, privKey, user))
	return trapd{port: port, log: log}
}

func (d trapd) contents() string {
	data, _ := os.ReadFile(d.log)
	return string(data)
}

func sample(id string) alert.Alert {
	c := "5f0c8a52-7e1d-4d55-9a3c-0b8e2f6a9d41"
	return alert.Alert{
		ID: id, Case: c, Transition: alert.Isolated, Severity: alert.SeverityWarning,
		Suspect: "page:0x2d94", FRU: "dimm:mc0/CPU_SrcID#0_Ha#0_Chan#1_DIMM#0",
		Summary: "2 corrected errors on page 0x2d94 within 24h", EvidenceCount: 2, Host: hostName,
		Undo: "selfprotect repair 5f0c8a52", Time: time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC),
	}
}

func config(d trapd, version, mode string) alert.SNMPConfig {
	c := alert.SNMPConfig{
		Target: fmt.Sprintf("127.0.0.1:%d", d.port), Version: version, Mode: mode,
		Retries: 3, RootOID: alert.DefaultRootOID,
	}
	if version == alert.SNMPv3 {
		c.User, c.AuthProtocol, c.AuthKey, c.PrivProtocol, c.PrivKey = user, "SHA", authKey, "AES", privKey
	} else {
		c.Community = "public"
	}
	return c
}

func TestNotificationsReachSnmptrapd(t *testing.T) {
	d := startTrapd(t)
	for _, tc := range []struct{ version, mode string }{
		{alert.SNMPv2c, alert.SNMPTrap},
		{alert.SNMPv2c, alert.SNMPInform},
		{alert.SNMPv3, alert.SNMPTrap},
		{alert.SNMPv3, alert.SNMPInform},
	} {
		t.Run(tc.version+"-"+tc.mode, func(t *testing.T) {
			n, err := New(config(d, tc.version, tc.mode), hostName)
			require.NoError(t, err)
			id := "id-" + tc.version + "-" + tc.mode
			retry, err := n.Notify(context.Background(), sample(id))
			require.NoError(t, err)
			require.False(t, retry)
			var record string
			require.Eventually(t, func() bool {
				for _, r := range strings.Split(d.contents(), "\n") {
					if strings.Contains(r, "spAlertId.0 = STRING: "+id+"\t") {
						record = r
						return true
					}
				}
				return false
			}, 10*time.Second, 20*time.Millisecond, "snmptrapd did not log the notification")
			for _, want := range []string{
				"SNMPv2-MIB::snmpTrapOID.0 = OID: SELFPROTECT-MIB::spCaseIsolated",
				"SELFPROTECT-MIB::spAlertId.0 = STRING: " + id,
				"SELFPROTECT-MIB::spCaseUUID.0 = STRING: 5f0c8a52-7e1d-4d55-9a3c-0b8e2f6a9d41",
				"SELFPROTECT-MIB::spTransition.0 = STRING: isolated",
				"SELFPROTECT-MIB::spSeverity.0 = INTEGER: warning(2)",
				"SELFPROTECT-MIB::spResource.0 = STRING: page:0x2d94",
				"SELFPROTECT-MIB::spFRU.0 = STRING: dimm:mc0/CPU_SrcID#0_Ha#0_Chan#1_DIMM#0",
				"SELFPROTECT-MIB::spSummary.0 = STRING: 2 corrected errors on page 0x2d94 within 24h",
				"SELFPROTECT-MIB::spHost.0 = STRING: db-7",
				"SELFPROTECT-MIB::spEvidenceCount.0 = Gauge32: 2",
				"SELFPROTECT-MIB::spUndo.0 = STRING: selfprotect repair 5f0c8a52",
			} {
				require.Contains(t, record, want)
			}
		})
	}
}

// TestV3WrongKeyRejected: a v3 trap under a wrong key is not logged. A v2c
// trap sent after it marks when snmptrapd has processed both.
func TestV3WrongKeyRejected(t *testing.T) {
	d := startTrapd(t)
	for _, tc := range []struct {
		name string
		edit func(*alert.SNMPConfig)
	}{
		{"wrong auth key", func(c *alert.SNMPConfig) { c.AuthKey = "not-the-auth-key" }},
		{"wrong priv key", func(c *alert.SNMPConfig) { c.PrivKey = "not-the-priv-key" }},
		{"unknown user", func(c *alert.SNMPConfig) { c.User = "mallory" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(d, alert.SNMPv3, alert.SNMPTrap)
			tc.edit(&cfg)
			bad, err := New(cfg, hostName)
			require.NoError(t, err)
			badID := "bad-" + strings.ReplaceAll(tc.name, " ", "-")
			_, err = bad.Notify(context.Background(), sample(badID))
			require.NoError(t, err, "a trap is fire-and-forget: the sender cannot know")

			marker, err := New(config(d, alert.SNMPv2c, alert.SNMPTrap), hostName)
			require.NoError(t, err)
			markerID := "marker-" + strings.ReplaceAll(tc.name, " ", "-")
			_, err = marker.Notify(context.Background(), sample(markerID))
			require.NoError(t, err)
			require.Eventually(t, func() bool { return strings.Contains(d.contents(), markerID) },
				10*time.Second, 20*time.Millisecond)
			require.NotContains(t, d.contents(), badID, "snmptrapd accepted a trap with the wrong credentials")
		})
	}
}

func TestInformWithoutManagerFails(t *testing.T) {
	for _, version := range []string{alert.SNMPv2c, alert.SNMPv3} {
		cfg := config(trapd{port: peertest.FreePort(t, "udp")}, version, alert.SNMPInform)
		cfg.Retries = 1
		n, err := New(cfg, hostName)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		retry, err := n.Notify(ctx, sample("unacked"))
		cancel()
		require.Error(t, err, version)
		require.True(t, retry, "an unacknowledged inform is retried")
	}
}

func TestVarbinds(t *testing.T) {
	n, err := New(alert.SNMPConfig{Target: "127.0.0.1:162", Version: alert.SNMPv2c, RootOID: "1.3.6.1.4.1.99999"}, hostName)
	require.NoError(t, err)
	a := sample("x")
	a.Summary = strings.Repeat("s", 300)
	a.Transition = alert.OutboxOverflow
	vars, err := n.Varbinds(a)
	require.NoError(t, err)
	require.Equal(t, "1.3.6.1.4.1.99999.0.14", vars[1].Value, "the root is configurable")
	i := slices.IndexFunc(vars, func(v gosnmp.SnmpPDU) bool { return v.Name == "1.3.6.1.4.1.99999.1.7.0" })
	require.Len(t, vars[i].Value, 255, "summary cut to the MIB's size")
	_, err = n.Varbinds(alert.Alert{Transition: "exploded"})
	require.Error(t, err)
}

// Every transition, the health problems' -cleared ends and dry-run's
// would-isolate included, reaches snmptrapd as the MIB's notification
// name, so a manager can pair a problem with its clear by spCaseUUID.
func TestEveryTransitionDecodesByName(t *testing.T) {
	d := startTrapd(t)
	n, err := New(config(d, alert.SNMPv2c, alert.SNMPInform), hostName)
	require.NoError(t, err)
	for _, tr := range alert.Transitions {
		a := sample("every-" + string(tr))
		a.Transition, a.Severity = tr, alert.DefaultSeverity(tr)
		_, err := n.Notify(context.Background(), a)
		require.NoError(t, err, tr)
	}
	for _, tr := range alert.Transitions {
		want := "SNMPv2-MIB::snmpTrapOID.0 = OID: SELFPROTECT-MIB::" + Notifications[tr] + "\t"
		require.Eventually(t, func() bool {
			for _, r := range strings.Split(d.contents(), "\n") {
				if strings.Contains(r, "spAlertId.0 = STRING: every-"+string(tr)+"\t") {
					return strings.Contains(r, want) && strings.Contains(r, "spTransition.0 = STRING: "+string(tr)+"\t")
				}
			}
			return false
		}, 10*time.Second, 20*time.Millisecond, "snmptrapd did not log %s as %s", tr, Notifications[tr])
	}
}
