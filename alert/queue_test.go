package alert

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/store"
)

// recorder counts what each alert ID received, the way a receiver that
// dedupes by ID would, and fails while down is set.
type recorder struct {
	mu   sync.Mutex
	got  map[string]int
	down bool
	sent chan string
}

func (r *recorder) Notify(ctx context.Context, a Alert) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return true, errors.New("connection refused")
	}
	r.got[a.ID]++
	r.sent <- a.ID
	return false, nil
}

func newRecorder(down bool) *recorder {
	return &recorder{got: map[string]int{}, down: down, sent: make(chan string, 100)}
}

func testAlert(i int, tr Transition) Alert {
	c := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	return Alert{ID: StableID("host1", c, tr), Case: c, Transition: tr, Severity: DefaultSeverity(tr),
		Suspect: "page:0x2d94", Summary: "2 CEs on one page", Host: "host1", Time: t0}
}

// TestOutboxSurvivesRestart: alerts queued while every notifier is down are
// delivered after a restart, each exactly once per routed notifier.
func TestOutboxSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "selfprotect.db")
	s, err := store.Open(path)
	require.NoError(t, err)
	mailDown, amDown := newRecorder(true), newRecorder(true)
	routes := []NamedNotifier{
		named("mail", mailDown, 1),
		{Name: "am", Notifier: amDown, Concurrency: 2, Timeout: time.Minute, Route: Route{MinSeverity: SeverityWarning}},
	}
	want := map[string]map[string]int{"mail": {}, "am": {}}
	for i := range 10 {
		for _, tr := range []Transition{Isolated, Repaired} {
			a := testAlert(i, tr)
			_, err := (&Outbox{Store: s, Notifiers: routes, MaxPending: 100}).Raise(t0, a)
			require.NoError(t, err)
			want["mail"][a.ID] = 1
			if tr == Isolated {
				want["am"][a.ID] = 1 // repaired is info: below am's route
			}
		}
	}
	clk := &fakeClock{now: t0}
	d, err := NewDispatcher(StoreQueue{s}, DispatcherConfig{Notifiers: routes, InitialBackoff: time.Second,
		MaxBackoff: time.Minute, Clock: clk})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	// Wait until every delivery that may go failed once (a case's repaired
	// waits behind its isolated), then "crash".
	require.Eventually(t, func() bool {
		st := d.Stats()
		return st["mail"].Failed >= 10 && st["am"].Failed >= 10
	}, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, recv(t, done, "stop"))
	require.NoError(t, s.Close())

	s, err = store.Open(path)
	require.NoError(t, err)
	defer s.Close()
	mail, am := newRecorder(false), newRecorder(false)
	routes[0].Notifier, routes[1].Notifier = mail, am
	clk.Advance(time.Hour)
	d, err = NewDispatcher(StoreQueue{s}, DispatcherConfig{Notifiers: routes, InitialBackoff: time.Second,
		MaxBackoff: time.Minute, Clock: clk})
	require.NoError(t, err)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- d.Run(ctx) }()
	for range 30 {
		select {
		case <-mail.sent:
		case <-am.sent:
		case <-time.After(10 * time.Second):
			t.Fatal("not every alert arrived")
		}
	}
	require.Eventually(t, func() bool {
		_, ok, err := s.NextAttempt()
		return err == nil && !ok
	}, 10*time.Second, time.Millisecond, "every delivery acknowledged")
	require.Equal(t, want["mail"], mail.got)
	require.Equal(t, want["am"], am.got)
	qs, err := s.OutboxQueues()
	require.NoError(t, err)
	require.Equal(t, []store.OutboxQueue{
		{Notifier: "am", Sent: 10, LastSent: t0.Add(time.Hour)},
		{Notifier: "mail", Sent: 20, LastSent: t0.Add(time.Hour)},
	}, qs)
}

func TestEntries(t *testing.T) {
	ns := []NamedNotifier{
		{Name: "all"},
		{Name: "crit", Route: Route{MinSeverity: SeverityCritical}},
		{Name: "iso", Route: Route{Transitions: []Transition{Isolated}}},
	}
	es, err := Entries(ns, testAlert(1, Isolated))
	require.NoError(t, err)
	require.Len(t, es, 2)
	require.Equal(t, "all", es[0].Notifier)
	require.Equal(t, "iso", es[1].Notifier)
	require.Equal(t, "isolated", es[0].Transition)
	require.Equal(t, testAlert(1, Isolated).Case, es[0].Subject)

	_, err = Entries(ns, Alert{ID: "x", Case: "c", Transition: "exploded", Severity: SeverityInfo})
	require.ErrorContains(t, err, `unknown transition "exploded"`)
}

func TestStableID(t *testing.T) {
	a := StableID("h", "case-1", Isolated)
	require.Equal(t, a, StableID("h", "case-1", Isolated))
	require.NotEqual(t, a, StableID("h", "case-1", Repaired))
	require.NotEqual(t, a, StableID("h2", "case-1", Isolated))
	require.NotEqual(t, StableID("ab", "c", Isolated), StableID("a", "bc", Isolated), "parts are separated")
	require.Equal(t, string(OutboxOverflow), store.OverflowTransition)
}
