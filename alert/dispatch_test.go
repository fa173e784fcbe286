package alert

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// fakeClock moves only when the test says so.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// memQueue is a Queue in memory that reports every ack and failure.
type memQueue struct {
	mu    sync.Mutex
	rows  map[int64]*memRow
	acks  chan int64
	fails chan failure
}

type memRow struct {
	d    Delivery
	next time.Time
	done bool
}

type failure struct {
	id        int64
	now, next time.Time
	err       string
	dead      bool
}

func newMemQueue(ds ...Delivery) *memQueue {
	q := &memQueue{rows: map[int64]*memRow{}, acks: make(chan int64, 100), fails: make(chan failure, 100)}
	for _, d := range ds {
		q.rows[d.ID] = &memRow{d: d, next: t0}
	}
	return q
}

func (q *memQueue) Due(now time.Time, notifier string, limit int) ([]Delivery, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Delivery
	for _, r := range q.rows {
		if !r.done && r.d.Notifier == notifier && !r.next.After(now) {
			out = append(out, r.d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out[:min(limit, len(out))], nil
}

func (q *memQueue) NextAttempt(notifiers ...string) (time.Time, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var next time.Time
	ok := false
	for _, r := range q.rows {
		for _, n := range notifiers {
			if !r.done && r.d.Notifier == n && (!ok || r.next.Before(next)) {
				next, ok = r.next, true
			}
		}
	}
	return next, ok, nil
}

func (q *memQueue) Ack(id int64, now time.Time) error {
	q.mu.Lock()
	q.rows[id].done = true
	q.mu.Unlock()
	q.acks <- id
	return nil
}

func (q *memQueue) Fail(id int64, now, next time.Time, errText string, dead bool) error {
	q.mu.Lock()
	r := q.rows[id]
	r.d.Attempts++
	r.next, r.done = next, dead
	q.mu.Unlock()
	q.fails <- failure{id, now, next, errText, dead}
	return nil
}

// scripted answers Notify from a list of outcomes, then succeeds; with
// gate set, each call first waits for a token (or ctx).
type scripted struct {
	mu       sync.Mutex
	outcomes []outcome
	got      []string
	inflight int
	maxSeen  int
	gate     chan struct{}
	started  chan string
}

type outcome struct {
	retry bool
	err   error
}

func (n *scripted) Notify(ctx context.Context, a Alert) (bool, error) {
	n.mu.Lock()
	n.inflight++
	n.maxSeen = max(n.maxSeen, n.inflight)
	n.mu.Unlock()
	defer func() { n.mu.Lock(); n.inflight--; n.mu.Unlock() }()
	if n.started != nil {
		n.started <- a.ID
	}
	if n.gate != nil {
		select {
		case <-n.gate:
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, a.ID)
	if len(n.outcomes) > 0 {
		o := n.outcomes[0]
		n.outcomes = n.outcomes[1:]
		return o.retry, o.err
	}
	return false, nil
}

func delivery(id int64, notifier string) Delivery {
	a := Alert{ID: fmt.Sprintf("alert-%d", id), Case: "c", Transition: Isolated, Severity: SeverityWarning}
	return Delivery{ID: id, Notifier: notifier, Alert: a}
}

// recv takes one value or fails the test; the bound only guards against a
// hang, it is no timing assertion.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
	}
	var zero T
	return zero
}

func startDispatcher(t *testing.T, q Queue, clk Clock, ns ...NamedNotifier) *Dispatcher {
	t.Helper()
	d, err := NewDispatcher(q, DispatcherConfig{
		Notifiers: ns, InitialBackoff: 10 * time.Second, MaxBackoff: 80 * time.Second, Clock: clk,
		Jitter: func(time.Duration) time.Duration { return 0 },
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, recv(t, done, "dispatcher stop")) })
	return d
}

func named(name string, n Notifier, concurrency int) NamedNotifier {
	return NamedNotifier{Name: name, Notifier: n, Concurrency: concurrency, Timeout: time.Minute}
}

func TestDispatcherDeliversEachOnce(t *testing.T) {
	q := newMemQueue(delivery(1, "a"), delivery(2, "a"), delivery(3, "a"), delivery(4, "b"))
	a, b := &scripted{}, &scripted{}
	d := startDispatcher(t, q, &fakeClock{now: t0}, named("a", a, 1), named("b", b, 1))
	var acked []int64
	for range 4 {
		acked = append(acked, recv(t, q.acks, "ack"))
	}
	sort.Slice(acked, func(i, j int) bool { return acked[i] < acked[j] })
	require.Equal(t, []int64{1, 2, 3, 4}, acked)
	require.ElementsMatch(t, []string{"alert-1", "alert-2", "alert-3"}, a.got)
	require.Equal(t, []string{"alert-4"}, b.got)
	require.Equal(t, 1, a.maxSeen, "concurrency 1 sends one at a time")
	st := d.Stats()
	require.Equal(t, int64(3), st["a"].Sent)
	require.Equal(t, t0, st["a"].LastSuccess)
}

func TestDispatcherRetriesWithExponentialBackoff(t *testing.T) {
	q := newMemQueue(delivery(1, "a"))
	down := errors.New("dial tcp 127.0.0.1:25: connection refused")
	a := &scripted{outcomes: []outcome{{true, down}, {true, down}, {true, down}}}
	clk := &fakeClock{now: t0}
	d := startDispatcher(t, q, clk, named("a", a, 1))

	// With zero jitter the waits are the lower halves: 5s, 10s, 20s.
	elapsed := time.Duration(0)
	for i, wait := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second} {
		f := recv(t, q.fails, "failure")
		require.Equal(t, t0.Add(elapsed), f.now, "attempt %d", i+1)
		require.Equal(t, f.now.Add(wait), f.next, "attempt %d", i+1)
		require.False(t, f.dead)
		require.Contains(t, f.err, "connection refused")
		clk.Advance(wait)
		d.Kick()
		elapsed += wait
	}
	require.Equal(t, int64(1), recv(t, q.acks, "ack"))
	require.Len(t, a.got, 4)
	st := d.Stats()
	require.Equal(t, int64(3), st["a"].Failed)
	require.Equal(t, int64(1), st["a"].Sent)
	require.Contains(t, st["a"].LastError, "connection refused")
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		jitter   func(time.Duration) time.Duration
		attempts int
		want     time.Duration
	}{
		{func(time.Duration) time.Duration { return 0 }, 0, 5 * time.Second},
		{func(d time.Duration) time.Duration { return d - 1 }, 0, 10*time.Second - 1},
		{func(time.Duration) time.Duration { return 0 }, 2, 20 * time.Second},
		{func(time.Duration) time.Duration { return 0 }, 3, 40 * time.Second},
		{func(time.Duration) time.Duration { return 0 }, 4, 40 * time.Second}, // capped at 80s
		{func(d time.Duration) time.Duration { return d - 1 }, 60, 80*time.Second - 1},
	} {
		d, err := NewDispatcher(newMemQueue(), DispatcherConfig{InitialBackoff: 10 * time.Second, MaxBackoff: 80 * time.Second, Jitter: tc.jitter})
		require.NoError(t, err)
		require.Equal(t, tc.want, d.Backoff(tc.attempts), "attempts %d", tc.attempts)
	}
	// The real jitter stays within [b/2, b).
	d, err := NewDispatcher(newMemQueue(), DispatcherConfig{InitialBackoff: 10 * time.Second, MaxBackoff: 80 * time.Second})
	require.NoError(t, err)
	for range 1000 {
		b := d.Backoff(1)
		require.True(t, b >= 10*time.Second && b < 20*time.Second, "%s", b)
	}
}

func TestDispatcherGivesUpWhenRetryCannotHelp(t *testing.T) {
	q := newMemQueue(delivery(1, "a"), delivery(2, "a"))
	a := &scripted{outcomes: []outcome{{false, errors.New("550 mailbox unavailable")}}}
	d := startDispatcher(t, q, &fakeClock{now: t0}, named("a", a, 1))
	f := recv(t, q.fails, "failure")
	require.True(t, f.dead)
	require.Equal(t, int64(2), recv(t, q.acks, "ack"), "the next delivery still goes out")
	require.Equal(t, int64(1), d.Stats()["a"].Dead)
}

// TestDispatcherHangingNotifierBlocksNoOne: a notifier whose sends hang
// holds at most its own concurrency, and another notifier keeps sending.
func TestDispatcherHangingNotifierBlocksNoOne(t *testing.T) {
	var ds []Delivery
	for i := range int64(5) {
		ds = append(ds, delivery(i+1, "slow"))
	}
	ds = append(ds, delivery(10, "fast"), delivery(11, "fast"))
	q := newMemQueue(ds...)
	slow := &scripted{gate: make(chan struct{}), started: make(chan string, 10)}
	fast := &scripted{}
	d := startDispatcher(t, q, &fakeClock{now: t0}, named("slow", slow, 2), named("fast", fast, 1))

	recv(t, slow.started, "first slow send")
	recv(t, slow.started, "second slow send")
	require.ElementsMatch(t, []int64{10, 11}, []int64{recv(t, q.acks, "ack"), recv(t, q.acks, "ack")})
	select {
	case id := <-slow.started:
		t.Fatalf("a third send (%s) started past the concurrency cap", id)
	default:
	}
	require.Equal(t, 2, d.Stats()["slow"].InFlight)
	for range 5 {
		slow.gate <- struct{}{}
	}
	for range 5 {
		recv(t, q.acks, "slow ack")
	}
	require.Equal(t, 2, slow.maxSeen)
}

func TestDispatcherTimesOutHangingSend(t *testing.T) {
	q := newMemQueue(delivery(1, "a"))
	hang := &scripted{gate: make(chan struct{})}
	n := named("a", hang, 1)
	n.Timeout = 10 * time.Millisecond
	startDispatcher(t, q, &fakeClock{now: t0}, n)
	f := recv(t, q.fails, "timeout failure")
	require.False(t, f.dead, "a timeout is retried")
	require.Contains(t, f.err, "timed out after 10ms")
}

func TestDispatcherRejectsBadConfig(t *testing.T) {
	_, err := NewDispatcher(newMemQueue(), DispatcherConfig{InitialBackoff: time.Minute, MaxBackoff: time.Second})
	require.Error(t, err)
	_, err = NewDispatcher(newMemQueue(), DispatcherConfig{InitialBackoff: time.Second, MaxBackoff: time.Minute,
		Notifiers: []NamedNotifier{named("a", &scripted{}, 1), named("a", &scripted{}, 1)}})
	require.ErrorContains(t, err, "configured twice")
}

func TestRouteMatch(t *testing.T) {
	crit := Alert{Transition: IsolationFailed, Severity: SeverityCritical}
	info := Alert{Transition: Repaired, Severity: SeverityInfo}
	test := Alert{Transition: Test, Severity: SeverityInfo}
	blindCleared := Alert{Transition: SourceBlindCleared, Severity: SeverityInfo}
	degradedCleared := Alert{Transition: SourceDegradedCleared, Severity: SeverityInfo}
	repairedIsolated := Alert{Transition: Repaired, Severity: SeverityInfo, Ends: []Transition{Diagnosed, Isolated}}
	repairedFailed := Alert{Transition: Repaired, Severity: SeverityInfo, Ends: []Transition{Diagnosed, IsolationFailed}}
	stormEnded := Alert{Transition: StormEnded, Severity: SeverityInfo, Ends: []Transition{StormStarted}}
	for _, tc := range []struct {
		route Route
		a     Alert
		want  bool
	}{
		{Route{}, info, true},
		{Route{MinSeverity: SeverityWarning}, info, false},
		{Route{MinSeverity: SeverityWarning}, crit, true},
		{Route{Transitions: []Transition{Isolated}}, crit, false},
		{Route{Transitions: []Transition{Isolated, IsolationFailed}}, crit, true},
		{Route{MinSeverity: SeverityCritical, Transitions: []Transition{Repaired}}, info, false},
		{Route{MinSeverity: SeverityCritical, Transitions: []Transition{Isolated}}, test, true},
		// A problem's end follows the problem: past a severity floor the
		// problem passes, and into a list naming only the problem.
		{Route{MinSeverity: SeverityCritical}, blindCleared, true},
		{Route{MinSeverity: SeverityCritical}, degradedCleared, false},
		{Route{Transitions: []Transition{SourceBlind}}, blindCleared, true},
		{Route{Transitions: []Transition{SourceBlind}}, degradedCleared, false},
		{Route{Transitions: []Transition{SourceDegradedCleared}}, degradedCleared, true},
		// A case's resolution follows the case's earlier alerts (Ends).
		{Route{MinSeverity: SeverityWarning}, repairedIsolated, true},
		{Route{MinSeverity: SeverityCritical}, repairedIsolated, false},
		{Route{MinSeverity: SeverityCritical}, repairedFailed, true},
		{Route{Transitions: []Transition{Isolated}}, repairedIsolated, true},
		{Route{Transitions: []Transition{Refused}}, repairedIsolated, false},
		{Route{MinSeverity: SeverityCritical, Transitions: []Transition{Repaired}}, repairedFailed, false},
		{Route{MinSeverity: SeverityWarning}, stormEnded, true},
		{Route{Transitions: []Transition{Isolated}}, stormEnded, false},
		// Alerts queued before Ends existed route as they did.
		{Route{MinSeverity: SeverityWarning}, Alert{Transition: Acquitted, Severity: SeverityInfo}, false},
	} {
		require.Equal(t, tc.want, tc.route.Match(tc.a), "%+v %s/%s", tc.route, tc.a.Transition, tc.a.Severity)
	}
}
