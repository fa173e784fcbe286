package store

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func entry(subject, transition, notifier string) OutboxEntry {
	return OutboxEntry{
		AlertID: "id-" + subject + "-" + transition, Subject: subject, Transition: transition,
		Notifier: notifier, Payload: []byte(`{"case":"` + subject + `"}`),
	}
}

func TestEnqueueWithCaseStateIsAtomic(t *testing.T) {
	s, _ := openTemp(t)
	c := newCase("5f0c8a52-7e1d-4d55-9a3c-0b8e2f6a9d41", at(0), fault.Page(0x2d94))
	require.NoError(t, s.SaveCase(c))

	res, err := s.UpdateCaseStateAndEnqueue(c.ID, fault.CaseIsolated, at(time.Second), "soft offline", 100,
		[]OutboxEntry{entry(c.ID, "isolated", "mail"), entry(c.ID, "isolated", "nms")})
	require.NoError(t, err)
	require.Equal(t, EnqueueResult{Added: 2}, res)
	got, err := s.Case(c.ID)
	require.NoError(t, err)
	require.Equal(t, fault.CaseIsolated, got.State)
	due, err := s.DueDeliveries(at(time.Second), "", 10)
	require.NoError(t, err)
	require.Len(t, due, 2)
	require.Equal(t, at(time.Second), due[0].Created)
	require.Equal(t, []byte(`{"case":"`+c.ID+`"}`), due[0].Payload)

	// A state change that fails takes its alerts with it.
	_, err = s.UpdateCaseStateAndEnqueue("no-such-case", fault.CaseIsolated, at(2*time.Second), "", 100,
		[]OutboxEntry{entry("no-such-case", "isolated", "mail")})
	require.ErrorIs(t, err, ErrNotFound)
	// And a caller's own change through Write, likewise.
	boom := errors.New("boom")
	err = s.Write("test change", func(tx *sql.Tx) error {
		if _, err := EnqueueTx(tx, at(3*time.Second), 100, []OutboxEntry{entry("other", "diagnosed", "mail")}); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	due, err = s.DueDeliveries(at(time.Hour), "", 10)
	require.NoError(t, err)
	require.Len(t, due, 2, "rolled-back alerts are not queued")
}

func TestEnqueueDeduplicatesPerNotifier(t *testing.T) {
	s, _ := openTemp(t)
	res, err := s.Enqueue(at(0), 100, []OutboxEntry{entry("c1", "isolated", "mail"), entry("c1", "isolated", "nms")})
	require.NoError(t, err)
	require.Equal(t, 2, res.Added)
	res, err = s.Enqueue(at(time.Second), 100, []OutboxEntry{entry("c1", "isolated", "mail"), entry("c1", "repaired", "mail")})
	require.NoError(t, err)
	require.Equal(t, EnqueueResult{Added: 1, Duplicates: 1}, res)

	pending, err := s.Deliveries(DeliveryPending)
	require.NoError(t, err)
	require.Len(t, pending, 3)
	due, err := s.DueDeliveries(at(time.Second), "", 10)
	require.NoError(t, err)
	require.Len(t, due, 2, "repaired waits until isolated is sent to mail")
	require.NoError(t, s.AckDelivery(due[0].ID, at(2*time.Second)))
	// Sent rows still count: the same transition is never sent twice.
	res, err = s.Enqueue(at(3*time.Second), 100, []OutboxEntry{due[0].OutboxEntry})
	require.NoError(t, err)
	require.Equal(t, EnqueueResult{Duplicates: 1}, res)
}

func TestEnqueueBound(t *testing.T) {
	s, _ := openTemp(t)
	var entries []OutboxEntry
	for i := range 5 {
		entries = append(entries, entry(fmt.Sprintf("c%d", i), "diagnosed", "mail"))
	}
	entries = append(entries, entry("c0", "diagnosed", "nms"))
	res, err := s.Enqueue(at(0), 3, entries)
	require.NoError(t, err)
	require.Equal(t, EnqueueResult{Added: 4, Dropped: 2, DroppedFor: []string{"mail"}}, res)

	// The overflow alert itself gets in past the bound.
	res, err = s.Enqueue(at(time.Second), 3, []OutboxEntry{entry("outbox:mail:1", OverflowTransition, "mail")})
	require.NoError(t, err)
	require.Equal(t, 1, res.Added)

	qs, err := s.OutboxQueues()
	require.NoError(t, err)
	require.Equal(t, []OutboxQueue{
		{Notifier: "mail", Pending: 4, Dropped: 2},
		{Notifier: "nms", Pending: 1},
	}, qs)

	// Delivering frees room.
	due, err := s.DueDeliveries(at(time.Second), "mail", 1)
	require.NoError(t, err)
	require.NoError(t, s.AckDelivery(due[0].ID, at(2*time.Second)))
	res, err = s.Enqueue(at(3*time.Second), 4, []OutboxEntry{entry("c9", "diagnosed", "mail")})
	require.NoError(t, err)
	require.Equal(t, 1, res.Added)
}

func TestDeliveryLifecycle(t *testing.T) {
	s, path := openTemp(t)
	_, err := s.Enqueue(at(0), 100, []OutboxEntry{entry("c1", "isolated", "mail"), entry("c2", "isolated", "mail")})
	require.NoError(t, err)
	due, err := s.DueDeliveries(at(0), "", 10)
	require.NoError(t, err)
	require.Len(t, due, 2)
	first, second := due[0], due[1]

	require.NoError(t, s.FailDelivery(first.ID, at(time.Second), at(time.Minute), "dial tcp: connection refused", false))
	require.NoError(t, s.FailDelivery(second.ID, at(time.Second), at(time.Second), "550 no such user", true))
	require.ErrorIs(t, s.AckDelivery(second.ID, at(2*time.Second)), ErrNotPending, "a dead delivery is never sent")

	for _, tc := range []struct {
		now  time.Time
		want int
	}{{at(2 * time.Second), 0}, {at(time.Minute), 1}} {
		due, err := s.DueDeliveries(tc.now, "mail", 10)
		require.NoError(t, err)
		require.Len(t, due, tc.want, "due at %s", tc.now)
	}
	next, ok, err := s.NextAttempt()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, at(time.Minute), next)
	_, ok, err = s.NextAttempt("nms", "pager")
	require.NoError(t, err)
	require.False(t, ok, "only the named notifiers count")
	due, err = s.DueDeliveries(at(time.Hour), "nms", 10)
	require.NoError(t, err)
	require.Empty(t, due)

	qs, err := s.OutboxQueues()
	require.NoError(t, err)
	require.Equal(t, []OutboxQueue{{Notifier: "mail", Pending: 1, Dead: 1, LastError: "dial tcp: connection refused"}}, qs)

	// A restart finds the pending delivery again, with its attempt count.
	require.NoError(t, s.Close())
	s2, err := Open(path)
	require.NoError(t, err)
	defer s2.Close()
	due, err = s2.DueDeliveries(at(time.Hour), "", 10)
	require.NoError(t, err)
	require.Len(t, due, 1)
	require.Equal(t, first.ID, due[0].ID)
	require.Equal(t, 1, due[0].Attempts)
	require.NoError(t, s2.AckDelivery(first.ID, at(time.Hour)))
	_, ok, err = s2.NextAttempt()
	require.NoError(t, err)
	require.False(t, ok, "nothing pending")
	sent, err := s2.Deliveries(DeliverySent)
	require.NoError(t, err)
	require.Len(t, sent, 1)
	require.Equal(t, 2, sent[0].Attempts)
	require.Equal(t, at(time.Hour), sent[0].Done)

	n, err := s2.PruneOutbox(at(time.Hour))
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "the dead row finished before the cut-off; the sent one at it")
	n, err = s2.PruneOutbox(at(time.Hour + 1))
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
}

func TestEnqueueRejectsIncompleteEntries(t *testing.T) {
	s, _ := openTemp(t)
	for _, e := range []OutboxEntry{
		{Subject: "c", Transition: "t", Notifier: "n"},
		{AlertID: "a", Transition: "t", Notifier: "n"},
		{AlertID: "a", Subject: "c", Notifier: "n"},
		{AlertID: "a", Subject: "c", Transition: "t"},
	} {
		_, err := s.Enqueue(at(0), 10, []OutboxEntry{e})
		require.Error(t, err, "%+v", e)
	}
}

// TestMigrateFromVersion1 opens a file written before the outbox existed.
func TestMigrateFromVersion1(t *testing.T) {
	path := t.TempDir() + "/v1.db"
	db, err := sql.Open("sqlite", dsn(path, false))
	require.NoError(t, err)
	_, err = db.Exec(createMigrations)
	require.NoError(t, err)
	_, err = db.Exec(migrations[0])
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO migrations(version, applied) VALUES (1, 0)`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	v, err := version(s.w)
	require.NoError(t, err)
	require.Equal(t, SchemaVersion(), v)
	_, err = s.Enqueue(at(0), 10, []OutboxEntry{entry("c1", "diagnosed", "mail")})
	require.NoError(t, err)
}

// A subject's deliveries to one notifier go out in the order they were
// queued: a later transition waits while an earlier one is retried.
func TestDueDeliveriesInOrderPerSubject(t *testing.T) {
	s, _ := openTemp(t)
	_, err := s.Enqueue(at(0), 100, []OutboxEntry{entry("c1", "diagnosed", "mail"), entry("c1", "isolated", "mail"),
		entry("c1", "isolated", "nms"), entry("c2", "diagnosed", "mail")})
	require.NoError(t, err)
	subjects := func(now time.Time, notifier string) []string {
		ds, err := s.DueDeliveries(now, notifier, 10)
		require.NoError(t, err)
		var out []string
		for _, d := range ds {
			out = append(out, d.Subject+" "+d.Transition+" "+d.Notifier)
		}
		return out
	}
	require.Equal(t, []string{"c1 diagnosed mail", "c2 diagnosed mail"}, subjects(at(0), "mail"))
	first, err := s.DueDeliveries(at(0), "mail", 1)
	require.NoError(t, err)
	// c1's diagnosed fails and backs off: its isolated is due but waits.
	require.NoError(t, s.FailDelivery(first[0].ID, at(0), at(time.Minute), "down", false))
	require.Equal(t, []string{"c2 diagnosed mail"}, subjects(at(time.Second), "mail"))
	require.Equal(t, []string{"c1 isolated nms"}, subjects(at(time.Second), "nms"), "other notifiers are not held up")
	require.Equal(t, []string{"c2 diagnosed mail", "c1 diagnosed mail"}, subjects(at(time.Minute), "mail"), "the longest due first")
	require.NoError(t, s.AckDelivery(first[0].ID, at(time.Minute)))
	require.Equal(t, []string{"c1 isolated mail", "c2 diagnosed mail"}, subjects(at(time.Minute), "mail"))
}

// A condition announced and not ended is found whatever the state of its
// rows, once per subject; its rows survive pruning while it is kept open.
func TestUnansweredAndPruneKeep(t *testing.T) {
	s, _ := openTemp(t)
	_, err := s.Enqueue(at(0), 100, []OutboxEntry{
		entry("h:a", "source-blind", "mail"), entry("h:a", "source-blind", "nms"),
		entry("h:b", "source-blind", "mail"), entry("h:b", "source-blind-cleared", "mail"),
		entry("h:c", "unarmed", "mail"),
		entry("h:d", "source-blind", "nms"),
	})
	require.NoError(t, err)
	subjects := func() []string {
		ds, err := s.Unanswered("source-blind", "source-blind-cleared")
		require.NoError(t, err)
		var out []string
		for _, d := range ds {
			out = append(out, d.Subject+" "+d.Notifier)
		}
		return out
	}
	require.Equal(t, []string{"h:a mail", "h:d nms"}, subjects())

	due, err := s.DueDeliveries(at(0), "", 10)
	require.NoError(t, err)
	for _, d := range due {
		require.NoError(t, s.AckDelivery(d.ID, at(time.Second)))
	}
	due, err = s.DueDeliveries(at(0), "", 10) // the clear of h:b, after its problem
	require.NoError(t, err)
	require.Len(t, due, 1)
	require.NoError(t, s.AckDelivery(due[0].ID, at(time.Second)))
	require.Equal(t, []string{"h:a mail", "h:d nms"}, subjects(), "sent rows still say it was announced")

	n, err := s.PruneOutbox(at(time.Hour), "h:a", "h:d")
	require.NoError(t, err)
	require.Equal(t, int64(3), n, "h:b's two rows and h:c's go; the kept subjects stay")
	require.Equal(t, []string{"h:a mail", "h:d nms"}, subjects())
	n, err = s.PruneOutbox(at(time.Hour))
	require.NoError(t, err)
	require.Equal(t, int64(3), n)
	require.Empty(t, subjects())
}
