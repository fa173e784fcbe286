package alertmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/internal/peertest"
)

// startAlertmanager runs Debian's prometheus-alertmanager on a free
// loopback port and returns its base URL.
func startAlertmanager(t *testing.T) string {
	return peertest.Alertmanager(t, peertest.FreePort(t, "tcp"))
}

// gettable is the part of the v2 API's GET /api/v2/alerts answer we check.
type gettable struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func activeAlerts(t *testing.T, base, caseID string) []gettable {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts?filter=" + "case%3D%22" + caseID + "%22")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out []gettable
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

// opened is when the test case opened: every transition carries it, as
// the daemon's alerts carry the case's time.
var opened = time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()

func caseAlert(tr alert.Transition, sev alert.Severity) alert.Alert {
	c := "5f0c8a52-7e1d-4d55-9a3c-0b8e2f6a9d41"
	return alert.Alert{
		ID: alert.StableID("db-7", c, tr), Case: c, Transition: tr, Severity: sev,
		Suspect: "page:0x2d94", FRU: "dimm:mc0/CPU_SrcID#0_Ha#0_Chan#1_DIMM#0",
		Summary: "2 corrected errors on page 0x2d94 within 24h", EvidenceCount: 2,
		Evidence: []string{"2026-03-14T09:20:00Z mce cpu2 bank7 addr 0x2d94000"}, Host: "db-7",
		Undo: "selfprotect repair 5f0c8a52", Time: opened,
	}
}

func TestAlertmanagerFiresRepostsAndResolves(t *testing.T) {
	base := startAlertmanager(t)
	n, err := New(alert.AlertmanagerConfig{URL: alert.BaseURL(base + "/"), RepostInterval: time.Minute}, nil)
	require.NoError(t, err)
	ctx := context.Background()

	for _, a := range []alert.Alert{
		caseAlert(alert.Diagnosed, alert.SeverityWarning),
		caseAlert(alert.Isolated, alert.SeverityWarning),
	} {
		retry, err := n.Notify(ctx, a)
		require.NoError(t, err)
		require.False(t, retry)
	}
	var got []gettable
	require.Eventually(t, func() bool { got = activeAlerts(t, base, caseAlert(alert.Isolated, "").Case); return len(got) == 1 },
		10*time.Second, 50*time.Millisecond, "Alertmanager does not show the alert")
	a := caseAlert(alert.Isolated, alert.SeverityWarning)
	require.Equal(t, map[string]string{
		"alertname": "SelfprotectCase", "severity": "warning", "instance": "db-7", "case": a.Case,
		"resource": "page:0x2d94", "fru": "dimm:mc0/CPU_SrcID#0_Ha#0_Chan#1_DIMM#0",
	}, got[0].Labels, "diagnosed and isolated are one alert")
	require.Equal(t, "isolated", got[0].Annotations["transition"], "the later transition updated it")
	require.Equal(t, a.Summary, got[0].Annotations["summary"])
	require.Equal(t, a.Undo, got[0].Annotations["undo"])
	require.Equal(t, a.ID, got[0].Annotations["alert_id"])
	require.Equal(t, "active", got[0].Status.State)
	require.True(t, got[0].StartsAt.Equal(a.Time), "startsAt %s, want %s", got[0].StartsAt, a.Time)
	firstEnd := got[0].EndsAt
	require.True(t, firstEnd.After(time.Now().Add(time.Minute)), "endsAt %s is three intervals ahead", firstEnd)

	// A failed isolation is critical: a second alert of the same case.
	_, err = n.Notify(ctx, caseAlert(alert.IsolationFailed, alert.SeverityCritical))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(activeAlerts(t, base, a.Case)) == 2 }, 10*time.Second, 50*time.Millisecond)

	// Re-posting pushes endsAt forward for both.
	n.now = func() time.Time { return time.Now().Add(10 * time.Minute) }
	posted, err := n.Repost(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, posted)
	require.Eventually(t, func() bool {
		for _, g := range activeAlerts(t, base, a.Case) {
			if !g.EndsAt.After(firstEnd.Add(5 * time.Minute)) {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond, "re-post did not extend endsAt")

	// Repair resolves every severity of the case, and nothing is re-posted.
	n.now = time.Now
	_, err = n.Notify(ctx, caseAlert(alert.Repaired, alert.SeverityInfo))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(activeAlerts(t, base, a.Case)) == 0 }, 10*time.Second, 50*time.Millisecond,
		"the case is still firing after repair")
	posted, err = n.Repost(ctx)
	require.NoError(t, err)
	require.Zero(t, posted)
}

func TestAlertmanagerDownIsRetried(t *testing.T) {
	port := peertest.FreePort(t, "tcp")
	n, err := New(alert.AlertmanagerConfig{URL: alert.BaseURL(fmt.Sprintf("http://127.0.0.1:%d", port))}, nil)
	require.NoError(t, err)
	retry, err := n.Notify(context.Background(), caseAlert(alert.Isolated, alert.SeverityWarning))
	require.True(t, retry)
	require.ErrorContains(t, err, "connection refused")
}

// Alertmanager's base URL is shown with its path (a route prefix, no
// secret) but without its query or user info, in every delivery error.
func TestAlertmanagerErrorsShowThePrefixOnly(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nothing at "+r.URL.String(), http.StatusNotFound)
	}))
	defer echo.Close()
	for _, tt := range []struct {
		name, base, want string
	}{
		{"down", closed.URL, "connection refused"},
		{"echoing the request", echo.URL, "404 Not Found: nothing at /am-prefix/api/v2/alerts?..."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := strings.Replace(tt.base, "http://", "http://ops:hunter2-password@", 1) + "/am-prefix/?token=hunter2-am-query"
			n, err := New(alert.AlertmanagerConfig{URL: alert.BaseURL(u)}, nil)
			require.NoError(t, err)
			_, err = n.Notify(context.Background(), caseAlert(alert.Isolated, alert.SeverityWarning))
			require.ErrorContains(t, err, "posting to "+tt.base+"/am-prefix/api/v2/alerts?...: ")
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestAlertName(t *testing.T) {
	for tr, want := range map[alert.Transition]string{
		alert.Isolated: "SelfprotectCase", alert.Repaired: "SelfprotectCase", alert.StormEnded: "SelfprotectCase",
		alert.SourceBlind: "SelfprotectSourceBlind", alert.BudgetExhausted: "SelfprotectBudgetExhausted",
		alert.OutboxOverflow: "SelfprotectOutboxOverflow", alert.WouldIsolate: "SelfprotectCase",
		alert.SourceBlindCleared: "SelfprotectSourceBlind", alert.SourceDegradedCleared: "SelfprotectSourceDegraded",
		alert.Unarmed: "SelfprotectUnarmed", alert.UnarmedCleared: "SelfprotectUnarmed",
	} {
		require.Equal(t, want, AlertName(alert.Alert{Transition: tr}), string(tr))
	}
}

// A health problem fires in a real Alertmanager, is re-posted while it
// lasts (Alertmanager would resolve it on its own otherwise), and its
// -cleared transition resolves it.
func TestAlertmanagerHealthProblemFiresUntilCleared(t *testing.T) {
	base := startAlertmanager(t)
	n, err := New(alert.AlertmanagerConfig{URL: alert.BaseURL(base), RepostInterval: time.Minute}, nil)
	require.NoError(t, err)
	ctx := context.Background()
	subject := alert.Subject("health", "tracefs", string(alert.SourceBlind), "1764583200000000000")
	problem := alert.Alert{
		ID: alert.StableID("db-7", subject, alert.SourceBlind), Case: subject, Transition: alert.SourceBlind,
		Severity: alert.SeverityCritical, Summary: "tracing_on is 0 in instance selfprotect", Host: "db-7", Time: opened,
	}
	_, err = n.Notify(ctx, problem)
	require.NoError(t, err)
	var got []gettable
	require.Eventually(t, func() bool { got = activeAlerts(t, base, subject); return len(got) == 1 },
		10*time.Second, 50*time.Millisecond, "Alertmanager does not show the problem")
	require.Equal(t, "SelfprotectSourceBlind", got[0].Labels["alertname"])
	require.Equal(t, "critical", got[0].Labels["severity"])

	posted, err := n.Repost(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, posted, "an open problem is re-posted like an open case")

	end := problem
	end.Transition, end.Severity, end.ID = alert.SourceBlindCleared, alert.SeverityInfo, alert.StableID("db-7", subject, alert.SourceBlindCleared)
	end.Summary = "tracing is on again"
	_, err = n.Notify(ctx, end)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(activeAlerts(t, base, subject)) == 0 }, 10*time.Second, 50*time.Millisecond,
		"the problem still fires after it cleared")
	posted, err = n.Repost(ctx)
	require.NoError(t, err)
	require.Zero(t, posted)
}
