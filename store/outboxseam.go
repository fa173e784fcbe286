package store

import (
	"database/sql"
	"time"
)

// The methods below are the outbox as alert.Persistence names it. They
// speak only in builtin types so that the store satisfies alert's interface
// without either package importing the other (architecture.md, "Floors");
// daemon/ hands the *Store to alert.

// EnqueueOne queues one delivery inside tx (EnqueueTx for a single entry):
// added is false for a duplicate of (subject, transition, notifier) or when
// dropped because the notifier's queue holds maxPending rows.
func (s *Store) EnqueueOne(tx *sql.Tx, now time.Time, maxPending int,
	alertID, subject, transition, notifier string, payload []byte) (added, dropped bool, err error) {
	res, err := enqueueTx(s.in(tx), now, maxPending, []OutboxEntry{{AlertID: alertID, Subject: subject,
		Transition: transition, Notifier: notifier, Payload: payload}})
	return res.Added == 1, res.Dropped == 1, err
}

// EachDue calls fn for up to limit pending deliveries of notifier due at
// now, the longest due first (DueDeliveries).
func (s *Store) EachDue(now time.Time, notifier string, limit int, fn func(id int64, attempts int, payload []byte)) error {
	ds, err := s.DueDeliveries(now, notifier, limit)
	if err != nil {
		return err
	}
	for _, d := range ds {
		fn(d.ID, d.Attempts, d.Payload)
	}
	return nil
}

// EachQueue calls fn with every notifier's queue summary, by name
// (OutboxQueues).
func (s *Store) EachQueue(fn func(notifier string, pending, dead int, dropped int64, lastSent time.Time, lastError string)) error {
	qs, err := s.OutboxQueues()
	if err != nil {
		return err
	}
	for _, q := range qs {
		fn(q.Notifier, q.Pending, q.Dead, q.Dropped, q.LastSent, q.LastError)
	}
	return nil
}

// EachUnanswered calls fn with every subject announced by transition
// opening and not yet ended by closing (Unanswered).
func (s *Store) EachUnanswered(opening, closing string, fn func(subject string, payload []byte)) error {
	ds, err := s.Unanswered(opening, closing)
	if err != nil {
		return err
	}
	for _, d := range ds {
		fn(d.Subject, d.Payload)
	}
	return nil
}
