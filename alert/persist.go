package alert

import (
	"database/sql"
	"time"
)

// Persistence is what the outbox needs from the store that keeps it: the
// durable queue of (alert, notifier) deliveries, written in the caller's
// transaction. It speaks only in builtin types, so store.Store satisfies it
// without alert importing store or the other way round; daemon/ joins the
// two. The contract (architecture.md, "The alert outbox"):
//
//   - Write runs fn in one write transaction and commits it, or returns
//     fn's error having rolled back: a state change and its alerts are
//     durable together or not at all.
//   - EnqueueOne inserts a pending row inside tx, due at now. Rows are
//     unique on (subject, transition, notifier): a second insert is a
//     no-op (added false). A notifier with maxPending pending rows takes no
//     more (dropped true, counted for EachQueue) except rows of transition
//     outbox-overflow, which pass the bound.
//   - EachDue visits pending rows of one notifier with next attempt <= now,
//     the longest due first, at most limit, skipping a row while an older
//     row of the same subject is pending for that notifier (a receiver sees
//     a case's transitions in order); fn may call AckDelivery or
//     FailDelivery (the rows are read before fn runs).
//   - NextAttempt is the earliest next attempt among the named notifiers'
//     pending rows; ok false when none.
//   - AckDelivery marks a pending row sent; FailDelivery counts a failed
//     attempt and reschedules it at next, or gives it up (dead) for good.
//     Both fail on a row that is not pending.
//   - PruneOutbox deletes sent and dead rows finished before the cut-off,
//     but none of the subjects in keep; pending rows are never deleted.
//   - EachUnanswered visits each subject that has a row of transition
//     opening and none of closing (any notifier, any state), with the
//     payload of its first opening row.
//   - EachQueue visits every notifier with rows or drops.
type Persistence interface {
	Write(what string, fn func(tx *sql.Tx) error) error
	EnqueueOne(tx *sql.Tx, now time.Time, maxPending int,
		alertID, subject, transition, notifier string, payload []byte) (added, dropped bool, err error)
	EachDue(now time.Time, notifier string, limit int, fn func(id int64, attempts int, payload []byte)) error
	NextAttempt(notifiers ...string) (next time.Time, ok bool, err error)
	AckDelivery(id int64, now time.Time) error
	FailDelivery(id int64, now, next time.Time, errText string, dead bool) error
	PruneOutbox(before time.Time, keep ...string) (int64, error)
	EachUnanswered(opening, closing string, fn func(subject string, payload []byte)) error
	EachQueue(fn func(notifier string, pending, dead int, dropped int64, lastSent time.Time, lastError string)) error
}

// Entry is one delivery to queue: the alert as JSON for one notifier.
type Entry struct {
	AlertID    string
	Subject    string // the case UUID, or the key of a case-less alert
	Transition string
	Notifier   string
	Payload    []byte
}

// EnqueueResult counts what happened to the entries of one call.
type EnqueueResult struct {
	Added      int
	Duplicates int // already queued or sent for that (subject, transition, notifier)
	// Dropped entries found their notifier's queue full.
	Dropped int
	// DroppedFor names the notifiers that dropped something in this call.
	DroppedFor []string
}

// enqueue queues entries inside tx through p.
func enqueue(p Persistence, tx *sql.Tx, now time.Time, maxPending int, entries []Entry) (EnqueueResult, error) {
	var res EnqueueResult
	for _, e := range entries {
		added, dropped, err := p.EnqueueOne(tx, now, maxPending, e.AlertID, e.Subject, e.Transition, e.Notifier, e.Payload)
		switch {
		case err != nil:
			return res, err
		case added:
			res.Added++
		case dropped:
			res.Dropped++
			if n := len(res.DroppedFor); n == 0 || res.DroppedFor[n-1] != e.Notifier {
				res.DroppedFor = append(res.DroppedFor, e.Notifier)
			}
		default:
			res.Duplicates++
		}
	}
	return res, nil
}
