package alert

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "selfprotect.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func pendingByNotifier(t *testing.T, s *store.Store) map[string][]string {
	t.Helper()
	ds, err := s.Deliveries(store.DeliveryPending)
	require.NoError(t, err)
	out := map[string][]string{}
	for _, d := range ds {
		out[d.Notifier] = append(out[d.Notifier], d.Transition)
	}
	return out
}

// The daemon's pattern: a case state change and its alerts in one
// transaction through Apply.
func TestOutboxApplyWithCaseState(t *testing.T) {
	s := openStore(t)
	kicks := 0
	o := &Outbox{Store: s, MaxPending: 10, Host: "h", Kick: func() { kicks++ },
		Notifiers: []NamedNotifier{{Name: "all"}, {Name: "crit", Route: Route{MinSeverity: SeverityCritical}}}}
	c := fault.Case{ID: "5f0c8a52-7e1d-4d55-9a3c-0b8e2f6a9d41", Opened: t0, Rule: "page", Diagnosis: fault.DiagSoftOfflinePage,
		Suspect: fault.Page(0x2d94), State: fault.CaseOpen, Summary: "2 CEs"}
	require.NoError(t, s.SaveCase(c))

	a := testAlert(1, Isolated)
	a.Case = c.ID
	res, err := o.Apply("isolating", t0.Add(time.Second), func(tx *sql.Tx) error {
		return store.UpdateCaseStateTx(tx, c.ID, fault.CaseIsolated, t0.Add(time.Second), "soft offline")
	}, a)
	require.NoError(t, err)
	require.Equal(t, 1, res.Added)
	require.Equal(t, 1, kicks)
	got, err := s.Case(c.ID)
	require.NoError(t, err)
	require.Equal(t, fault.CaseIsolated, got.State)
	require.Equal(t, map[string][]string{"all": {"isolated"}}, pendingByNotifier(t, s))

	// A failed state change queues nothing and wakes no one.
	_, err = o.Apply("isolating", t0, func(tx *sql.Tx) error {
		return store.UpdateCaseStateTx(tx, "no-such-case", fault.CaseIsolated, t0, "")
	}, testAlert(2, IsolationFailed))
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Equal(t, 1, kicks)
	require.Equal(t, map[string][]string{"all": {"isolated"}}, pendingByNotifier(t, s))
}

func TestOutboxOverflowIsAnAlert(t *testing.T) {
	s := openStore(t)
	o := &Outbox{Store: s, MaxPending: 2, Host: "h",
		Notifiers: []NamedNotifier{{Name: "all"}, {Name: "crit", Route: Route{MinSeverity: SeverityCritical}}}}
	var alerts []Alert
	for i := range 4 {
		alerts = append(alerts, testAlert(i, Diagnosed)) // warning: only "all" takes them
	}
	res, err := o.Raise(t0, alerts...)
	require.NoError(t, err)
	require.Equal(t, 2, res.Added)
	require.Equal(t, 2, res.Dropped)
	require.Equal(t, map[string][]string{
		"all":  {"diagnosed", "diagnosed", "outbox-overflow"},
		"crit": {"outbox-overflow"},
	}, pendingByNotifier(t, s), "the overflow alert passes the bound and goes to every route")

	// More drops within the hour raise no second overflow alert.
	res, err = o.Raise(t0.Add(time.Minute), testAlert(9, Diagnosed))
	require.NoError(t, err)
	require.Equal(t, 1, res.Dropped)
	require.Len(t, pendingByNotifier(t, s)["crit"], 1)
	qs, err := s.OutboxQueues()
	require.NoError(t, err)
	require.Equal(t, int64(3), qs[0].Dropped, "every drop is counted")

	// The next hour's overflow is a new alert.
	_, err = o.Raise(t0.Add(time.Hour), testAlert(10, Diagnosed))
	require.NoError(t, err)
	require.Len(t, pendingByNotifier(t, s)["crit"], 2)
}

// TestRaiseNeverWaitsForSends: with every notifier's sends hanging, raising
// alerts still returns at once; the hanging sends hold only their own
// concurrency.
func TestRaiseNeverWaitsForSends(t *testing.T) {
	s := openStore(t)
	hang := &scripted{gate: make(chan struct{}), started: make(chan string, 1000)}
	defer close(hang.gate)
	ns := []NamedNotifier{named("a", hang, 2), named("b", hang, 1)}
	d, err := NewDispatcher(StoreQueue{s}, DispatcherConfig{Notifiers: ns, InitialBackoff: time.Second, MaxBackoff: time.Minute})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, recv(t, done, "stop")) }()

	o := &Outbox{Store: s, Notifiers: ns, MaxPending: 1000, Host: "h", Kick: d.Kick}
	for i := range 50 {
		_, err := o.Raise(t0, testAlert(i, Isolated))
		require.NoError(t, err)
	}
	for range 3 {
		recv(t, hang.started, "a send")
	}
	require.Eventually(t, func() bool {
		st := d.Stats()
		return st["a"].InFlight == 2 && st["b"].InFlight == 1
	}, 10*time.Second, time.Millisecond)
	require.Equal(t, map[string]int{"a": 50, "b": 50}, pendingCounts(t, s), "every alert is queued")
}

func pendingCounts(t *testing.T, s *store.Store) map[string]int {
	out := map[string]int{}
	for n, ts := range pendingByNotifier(t, s) {
		out[n] = len(ts)
	}
	return out
}

func TestOutboxPrune(t *testing.T) {
	s := openStore(t)
	o := &Outbox{Store: s, Notifiers: []NamedNotifier{{Name: "a"}}, MaxPending: 10, Host: "h"}
	_, err := o.Raise(t0, testAlert(1, Isolated), testAlert(2, Isolated))
	require.NoError(t, err)
	q := StoreQueue{s}
	due, err := q.Due(t0, "a", 10)
	require.NoError(t, err)
	require.NoError(t, q.Ack(due[0].ID, t0))
	n, err := o.Prune(t0.Add(time.Hour), 2*time.Hour)
	require.NoError(t, err)
	require.Zero(t, n, "sent within keep_sent: kept")
	n, err = o.Prune(t0.Add(3*time.Hour), 2*time.Hour)
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "only the sent row goes; the pending one stays")
	require.Equal(t, map[string]int{"a": 1}, pendingCounts(t, s))
}

// Problems announced and not cleared are found again from the store, as
// first queued, whichever notifier holds them and whether sent or not;
// their rows outlive keep_sent while they stay open.
func TestOutboxOpenProblems(t *testing.T) {
	s := openStore(t)
	o := &Outbox{Store: s, Notifiers: []NamedNotifier{{Name: "a"}, {Name: "b", Route: Route{Transitions: []Transition{Unarmed}}}},
		MaxPending: 10, Host: "h"}
	problem := func(subject string, tr Transition) Alert {
		return Alert{ID: StableID("h", subject, tr), Case: subject, Transition: tr, Severity: DefaultSeverity(tr),
			Summary: subject + " " + string(tr), Host: "h", Time: t0}
	}
	_, err := o.Raise(t0, problem("health:tracefs:source-blind:1", SourceBlind), problem("health:tracefs:source-degraded:1", SourceDegraded),
		problem("health:daemon:unarmed:1", Unarmed), problem("health:ebpf:source-blind:1", SourceBlind))
	require.NoError(t, err)
	_, err = o.Raise(t0, problem("health:tracefs:source-blind:1", SourceBlindCleared))
	require.NoError(t, err)
	q := StoreQueue{s}
	due, err := q.Due(t0, "a", 10)
	require.NoError(t, err)
	for _, d := range due {
		require.NoError(t, q.Ack(d.ID, t0))
	}
	open, err := OpenProblems(s)
	require.NoError(t, err)
	var got []string
	for _, a := range open {
		got = append(got, string(a.Transition)+" "+a.Case)
		require.Equal(t, problem(a.Case, a.Transition), a)
	}
	require.ElementsMatch(t, []string{"source-blind health:ebpf:source-blind:1", "source-degraded health:tracefs:source-degraded:1",
		"unarmed health:daemon:unarmed:1"}, got)

	// A day later only the open problems' rows are left.
	_, err = o.Prune(t0.Add(24*time.Hour), time.Hour, "health:ebpf:source-blind:1", "health:tracefs:source-degraded:1", "health:daemon:unarmed:1")
	require.NoError(t, err)
	open, err = OpenProblems(s)
	require.NoError(t, err)
	require.Len(t, open, 3)
	ds, err := s.Deliveries(store.DeliverySent)
	require.NoError(t, err)
	for _, d := range ds {
		require.NotContains(t, d.Subject, "tracefs:source-blind", "the cleared problem's rows were pruned")
	}
}
