package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/store"
)

// down is a notifier whose peer is always down: what it is given stays
// pending in the outbox, where the tests read it.
type down struct{}

func (down) Notify(context.Context, alert.Alert) (bool, error) { return true, errors.New("peer down") }

// alertingDaemon is quietDaemon with one notifier and a settable clock.
func alertingDaemon(t *testing.T, now *time.Time) *Daemon {
	t.Helper()
	d := quietDaemon(t)
	d.alerts.close()
	d.now = func() time.Time { return *now }
	cfg := alert.DefaultConfig()
	cfg.Host = "h"
	cfg.Outbox.InitialBackoff, cfg.Outbox.MaxBackoff = time.Hour, time.Hour
	d.alerts = newAlerter(d.log, d.now, cfg, []alert.NamedNotifier{{Name: "n", Type: "test", Notifier: down{}, Timeout: time.Second}})
	d.alerts.start(context.Background(), d.store)
	t.Cleanup(d.alerts.close)
	return d
}

// pending lists the queued alerts as "transition subject".
func pending(t *testing.T, s *store.Store) []string {
	t.Helper()
	ds, err := s.Deliveries(store.DeliveryPending)
	require.NoError(t, err)
	var out []string
	for _, d := range ds {
		out = append(out, d.Transition+" "+d.Subject)
	}
	slices.Sort(out)
	return out
}

func transitions(t *testing.T, s *store.Store) []string {
	t.Helper()
	ds, err := s.Deliveries(store.DeliveryPending)
	require.NoError(t, err)
	var out []string
	for _, d := range ds {
		out = append(out, d.Transition)
	}
	slices.Sort(out)
	return out
}

// Health problems alert once per episode, keyed on their source and
// kind (a count changing inside the text is the same problem), and each
// episode ends with its -cleared counterpart under the same subject.
func TestAlertProblemsOncePerEpisode(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	d := alertingDaemon(t, &now)
	overrun := func(n int) problem {
		return problem{source: "tracefs", kind: alert.SourceDegraded, text: fmt.Sprintf("cpu1: %d events overrun", n)}
	}
	off := problem{source: "tracefs", kind: alert.SourceBlind, text: "tracing_on is 0 in instance selfprotect"}
	unarmed := problem{kind: alert.Unarmed, text: "no event source is armed"}
	steps := []struct {
		problems []problem
		want     []string // transitions queued so far
	}{
		{[]problem{overrun(3), off}, []string{"source-blind", "source-degraded"}},
		{[]problem{overrun(9), off}, []string{"source-blind", "source-degraded"}},
		{nil, []string{"source-blind", "source-blind-cleared", "source-degraded", "source-degraded-cleared"}},
		{[]problem{overrun(1)}, []string{"source-blind", "source-blind-cleared", "source-degraded", "source-degraded", "source-degraded-cleared"}},
		{[]problem{overrun(1), unarmed}, []string{"source-blind", "source-blind-cleared", "source-degraded", "source-degraded",
			"source-degraded-cleared", "unarmed"}},
		{[]problem{unarmed}, []string{"source-blind", "source-blind-cleared", "source-degraded", "source-degraded",
			"source-degraded-cleared", "source-degraded-cleared", "unarmed"}},
	}
	for i, s := range steps {
		now = now.Add(time.Second)
		d.alerts.health(s.problems)
		require.Equal(t, s.want, transitions(t, d.store), "step %d", i)
	}
	// Each clear has its problem's subject.
	ds, err := d.store.Deliveries(store.DeliveryPending)
	require.NoError(t, err)
	bySubject := map[string][]string{}
	for _, dl := range ds {
		bySubject[dl.Subject] = append(bySubject[dl.Subject], dl.Transition)
	}
	require.Len(t, bySubject, 4)
	for subject, ts := range bySubject {
		require.Contains(t, [][]string{{"source-blind", "source-blind-cleared"}, {"source-degraded", "source-degraded-cleared"}, {"unarmed"}}, ts, subject)
	}
}

// A restart in the middle of a problem does not announce it again; the
// problem ending after the restart is cleared under the subject announced
// before it, and one that ended while the daemon was down is cleared at
// the first check. The open problems' rows outlive keep_sent.
func TestAlertProblemsSurviveRestart(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	d := alertingDaemon(t, &now)
	off := problem{source: "tracefs", kind: alert.SourceBlind, text: "tracing_on is 0 in instance selfprotect"}
	broken := problem{source: "ebpf", kind: alert.SourceBlind, text: "source ebpf broken: ring buffer closed"}
	d.alerts.health([]problem{off, broken})
	require.Equal(t, []string{"source-blind", "source-blind"}, transitions(t, d.store))
	subjects := d.alerts.openSubjects()
	require.Len(t, subjects, 2)

	restart := func() {
		d.alerts.close()
		d.alerts = newAlerter(d.log, d.now, d.alerts.cfg, d.alerts.ns)
		d.alerts.start(context.Background(), d.store)
		t.Cleanup(d.alerts.close)
	}
	now = now.Add(time.Hour)
	restart()
	require.Equal(t, subjects, d.alerts.openSubjects(), "restored from the outbox")
	// The tracefs problem lasts; the eBPF source works after the restart.
	d.alerts.health([]problem{off})
	require.Equal(t, []string{"source-blind", "source-blind", "source-blind-cleared"}, transitions(t, d.store))
	require.Equal(t, []string{"source-blind source-blind-cleared"}, clearsOf(t, d.store, "health:ebpf:"))

	// Delivered, and a week later (past keep_sent) pruned: the rows of
	// the open problem stay, so another restart still knows it.
	ds, err := d.store.Deliveries(store.DeliveryPending)
	require.NoError(t, err)
	for _, dl := range ds {
		require.NoError(t, d.store.AckDelivery(dl.ID, now))
	}
	now = now.Add(8 * 24 * time.Hour)
	d.alerts.prune()
	sent, err := d.store.Deliveries(store.DeliverySent)
	require.NoError(t, err)
	require.Len(t, sent, 1, "the ebpf pair is pruned, the open problem is kept")
	require.Equal(t, subjects[1], sent[0].Subject)
	restart()
	d.alerts.health([]problem{off})
	require.Empty(t, transitions(t, d.store), "not announced again")
	d.alerts.health(nil)
	require.Equal(t, []string{"source-blind-cleared"}, transitions(t, d.store))
	require.Empty(t, d.alerts.openSubjects())
}

// clearsOf lists the transitions of the subjects starting with prefix, as
// "first second" per subject.
func clearsOf(t *testing.T, s *store.Store, prefix string) []string {
	t.Helper()
	ds, err := s.Deliveries(store.DeliveryPending)
	require.NoError(t, err)
	by := map[string][]string{}
	for _, d := range ds {
		if strings.HasPrefix(d.Subject, prefix) {
			by[d.Subject] = append(by[d.Subject], d.Transition)
		}
	}
	var out []string
	for _, ts := range by {
		out = append(out, strings.Join(ts, " "))
	}
	slices.Sort(out)
	return out
}

// A case is saved with its alert or not at all; the storm's case is the
// storm's one alert.
func TestAlertSaveCase(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	d := alertingDaemon(t, &now)
	page := fault.Case{ID: "11111111-0000-4000-8000-000000000001", Opened: now, Diagnosis: fault.DiagSoftOfflinePage,
		Suspect: fault.Page(0x2d94), State: fault.CaseOpen, Summary: "2 CEs"}
	require.NoError(t, d.alerts.saveCase(page))
	storm := fault.Case{ID: "11111111-0000-4000-8000-000000000002", Opened: now, Diagnosis: fault.DiagStorm,
		Suspect: fault.Machine, State: fault.CaseOpen, Summary: "storm"}
	require.NoError(t, d.alerts.saveCase(storm))
	bad := page
	bad.ID, bad.State = "11111111-0000-4000-8000-000000000003", "bogus"
	require.Error(t, d.alerts.saveCase(bad), "an invalid case is refused with its alert")
	require.Equal(t, []string{"diagnosed " + page.ID, "storm-started " + storm.ID}, pending(t, d.store))
	_, err := d.store.Case(bad.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// A write-ahead decision is stored with its diagnosed alert in the same
// fsync'd transaction: after a crash either both are there or neither.
func TestAlertSaveIntent(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	d := alertingDaemon(t, &now)
	c := fault.Case{ID: "33333333-0000-4000-8000-000000000001", Opened: now, Diagnosis: fault.DiagSoftOfflinePage,
		Suspect: fault.Page(0x2d94), State: fault.CaseOpen, Summary: "2 CEs"}
	intent := fault.Action{CaseID: c.ID, Time: now, Resource: c.Suspect, Kind: "soft-offline", Outcome: fault.OutcomeIntended}
	require.NoError(t, d.alerts.saveIntent(d.store, c, []fault.Action{intent}))
	require.Equal(t, []string{"diagnosed " + c.ID}, pending(t, d.store))
	unsettled, err := d.store.Unsettled()
	require.NoError(t, err)
	require.Len(t, unsettled, 1)
	require.Equal(t, c.Suspect, unsettled[0].Resource)

	// An intent naming another case fails the whole transaction: no case,
	// no alert.
	bad := c
	bad.ID = "33333333-0000-4000-8000-000000000002"
	require.Error(t, d.alerts.saveIntent(d.store, bad, []fault.Action{intent}))
	require.Equal(t, []string{"diagnosed " + c.ID}, pending(t, d.store))
	_, err = d.store.Case(bad.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// The outcome of an isolation picks its alert; a replayed isolation after
// a restart alerts only when it fails.
func TestAlertSettled(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c := fault.Case{ID: "22222222-0000-4000-8000-000000000001", Opened: now, Diagnosis: fault.DiagSoftOfflinePage,
		Suspect: fault.Page(0x2d94), FRU: "DIMM_A1", State: fault.CaseOpen, Summary: "2 CEs"}
	isolated := fault.Action{Resource: c.Suspect, Outcome: fault.OutcomeIsolated, Undo: "unpoison 0x2d94"}
	refused := fault.Action{Resource: c.Suspect, Outcome: fault.OutcomeRefused, Violations: []string{"max_pages_per_dimm"}, Detail: "refused: 64 pages"}
	failed := fault.Action{Resource: c.Suspect, Outcome: fault.OutcomeFailed, Detail: "EBUSY"}
	tests := []struct {
		name    string
		j       job
		actions []fault.Action
		state   fault.CaseState
		want    []alert.Transition
		undo    string
	}{
		{"isolated", job{c: c}, []fault.Action{isolated}, fault.CaseIsolated, []alert.Transition{alert.Isolated}, "unpoison 0x2d94"},
		{"replayed", job{c: c, replay: true}, []fault.Action{isolated}, fault.CaseIsolated, nil, ""},
		{"refused", job{c: c}, []fault.Action{refused}, fault.CaseFailed, []alert.Transition{alert.Refused, alert.BudgetExhausted}, ""},
		{"failed", job{c: c}, []fault.Action{failed}, fault.CaseFailed, []alert.Transition{alert.IsolationFailed}, ""},
		{"replay failed", job{c: c, replay: true}, []fault.Action{failed}, fault.CaseFailed, []alert.Transition{alert.IsolationFailed}, ""},
		{"dry-run", job{c: c}, []fault.Action{{Resource: c.Suspect, Outcome: fault.OutcomeDryRun}}, fault.CaseOpen, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := alertingDaemon(t, &now)
			got := d.alerts.settled(tc.j, tc.actions, tc.state)
			var ts []alert.Transition
			for _, a := range got {
				require.NoError(t, a.Validate())
				ts = append(ts, a.Transition)
				if a.Transition != alert.BudgetExhausted {
					require.Equal(t, c.ID, a.Case)
					require.Equal(t, "DIMM_A1", a.FRU)
				}
			}
			require.Equal(t, tc.want, ts)
			if len(got) > 0 {
				require.Equal(t, tc.undo, got[0].Undo)
			}
		})
	}
}

// Reload swaps the notifiers; a bad alerts: section keeps the running ones.
func TestAlertReloadKeepsRunningOnError(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	d := alertingDaemon(t, &now)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, writeFile(bad, "alerts:\n  notifiers:\n    - name: x\n      type: carrier-pigeon\n"))
	d.alerts.reload(bad)
	_, _, ns := d.alerts.current()
	require.Len(t, ns, 1)
	require.Equal(t, "n", ns[0].Name)

	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, writeFile(good, "alerts:\n  notifiers:\n    - name: hook\n      type: webhook\n      webhook: {url: http://127.0.0.1:9/}\n"))
	d.alerts.reload(good)
	_, _, ns = d.alerts.current()
	require.Len(t, ns, 1)
	require.Equal(t, "hook", ns[0].Name)
}

func writeFile(path, text string) error { return os.WriteFile(path, []byte(text), 0o644) }

// tracker records what a notifier that keeps cases firing is told at start.
type tracker struct {
	down
	tracked []string
}

func (tr *tracker) Track(a alert.Alert) {
	tr.tracked = append(tr.tracked, string(a.Transition)+" "+a.Case)
}

// Cases open at start are handed to notifiers that keep them firing
// (Alertmanager), whose memory the restart emptied; resolved ones are not.
func TestAlertTrackOpenCasesAtStart(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	d := alertingDaemon(t, &now)
	for i, st := range []fault.CaseState{fault.CaseOpen, fault.CaseIsolated, fault.CaseFailed, fault.CaseRepaired} {
		c := fault.Case{ID: fmt.Sprintf("33333333-0000-4000-8000-%012d", i), Opened: now, Diagnosis: fault.DiagSoftOfflinePage,
			Suspect: fault.Page(uint64(0x100 + i)), State: st, Summary: "s"}
		require.NoError(t, d.store.SaveCase(c))
	}
	d.alerts.close()
	tr := &tracker{}
	d.alerts = newAlerter(d.log, d.now, alert.DefaultConfig(), []alert.NamedNotifier{{Name: "am", Notifier: tr, Timeout: time.Second}})
	d.alerts.start(context.Background(), d.store)
	d.alerts.close()
	slices.Sort(tr.tracked)
	require.Equal(t, []string{
		"diagnosed 33333333-0000-4000-8000-000000000000",
		"isolated 33333333-0000-4000-8000-000000000001",
		"isolation-failed 33333333-0000-4000-8000-000000000002",
	}, tr.tracked)
}

// Dry-run announces what enforcing would have done; a replayed decision
// and a case with nothing left to do in dry-run do not.
func TestAlertWouldIsolate(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c := fault.Case{ID: "44444444-0000-4000-8000-000000000001", Opened: now, Diagnosis: fault.DiagSoftOfflinePage,
		Suspect: fault.Page(0x2d94), FRU: "DIMM_A1", State: fault.CaseOpen, Summary: "2 CEs on page 0x2d94"}
	dry := fault.Action{Resource: c.Suspect, Kind: "soft-offline", Outcome: fault.OutcomeDryRun}
	d := alertingDaemon(t, &now)
	got := d.alerts.wouldIsolate(job{c: c}, []fault.Action{dry})
	require.Len(t, got, 1)
	require.NoError(t, got[0].Validate())
	require.Equal(t, alert.WouldIsolate, got[0].Transition)
	require.Equal(t, c.ID, got[0].Case)
	require.Equal(t, "DIMM_A1", got[0].FRU)
	require.Equal(t, alert.SeverityWarning, got[0].Severity)
	require.Equal(t, "dry-run: would soft-offline page:0x2d94 (budgets allow it); 2 CEs on page 0x2d94", got[0].Summary)
	require.Empty(t, d.alerts.wouldIsolate(job{c: c, replay: true}, []fault.Action{dry}))
	require.Empty(t, d.alerts.wouldIsolate(job{c: c}, []fault.Action{{Resource: c.Suspect, Outcome: fault.OutcomeAlreadyIsolated}}))
}

// A case's resolution reaches every notifier that heard the case: a route
// for warnings and up got "isolated" and must get "repaired" (info), or an
// Alertmanager behind it would never see the case resolved; a route for
// critical alerts only hears the repair of a case whose isolation failed.
func TestAlertResolutionFollowsTheCase(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c := fault.Case{ID: "33333333-0000-4000-8000-000000000001", Opened: now, Diagnosis: fault.DiagSoftOfflinePage,
		Suspect: fault.Page(0x2d94), State: fault.CaseIsolated, Summary: "2 CEs"}
	act := func(o fault.Outcome) fault.Action { return fault.Action{CaseID: c.ID, Resource: c.Suspect, Outcome: o} }
	tests := []struct {
		name     string
		acts     []fault.Action
		ends     []alert.Transition
		warning  bool // a min_severity: warning notifier gets the repair
		critical bool // a min_severity: critical one does
	}{
		{"isolated", []fault.Action{act(fault.OutcomeIntended), act(fault.OutcomeIsolated)},
			[]alert.Transition{alert.Diagnosed, alert.Isolated}, true, false},
		{"failed", []fault.Action{act(fault.OutcomeIntended), act(fault.OutcomeFailed)},
			[]alert.Transition{alert.Diagnosed, alert.IsolationFailed}, true, true},
		{"refused then isolated by the kernel", []fault.Action{act(fault.OutcomeRefused), act(fault.OutcomeIsolatedByOther)},
			[]alert.Transition{alert.Diagnosed, alert.Refused, alert.Isolated}, true, false},
		{"dry-run", []fault.Action{act(fault.OutcomeDryRun)},
			[]alert.Transition{alert.Diagnosed, alert.WouldIsolate}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := quietDaemon(t)
			d.alerts.close()
			d.now = func() time.Time { return now }
			cfg := alert.DefaultConfig()
			cfg.Host = "h"
			cfg.Outbox.InitialBackoff, cfg.Outbox.MaxBackoff = time.Hour, time.Hour
			notifier := func(name string, min alert.Severity) alert.NamedNotifier {
				return alert.NamedNotifier{Name: name, Type: "test", Notifier: down{}, Timeout: time.Second, Route: alert.Route{MinSeverity: min}}
			}
			d.alerts = newAlerter(d.log, d.now, cfg, []alert.NamedNotifier{notifier("warn", alert.SeverityWarning), notifier("crit", alert.SeverityCritical)})
			d.alerts.start(context.Background(), d.store)
			t.Cleanup(d.alerts.close)

			r := d.alerts.resolved(c, tc.acts, "repair", "by operator")
			require.NoError(t, r.Validate())
			require.Equal(t, tc.ends, r.Ends)
			d.alerts.raise(r)
			ds, err := d.store.Deliveries(store.DeliveryPending)
			require.NoError(t, err)
			got := map[string]bool{}
			for _, dl := range ds {
				require.Equal(t, string(alert.Repaired), dl.Transition)
				got[dl.Notifier] = true
			}
			require.Equal(t, tc.warning, got["warn"], "warnings notifier")
			require.Equal(t, tc.critical, got["crit"], "critical notifier")
		})
	}
}
