package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// The alert outbox: one row per (alert, notifier) delivery. An alert is
// queued in the same transaction as the state change that causes it, so a
// crash either loses both or keeps both; a row leaves the pending state
// only when its notifier succeeded (or said retrying cannot help).
//
// Rows are unique on (subject, transition, notifier): queueing the same
// transition of the same case twice is a no-op, and a crash between a
// send and its ack re-sends that one delivery once, with the same alert ID
// so the receiver can drop the copy.

// DeliveryState is where a delivery row stands.
type DeliveryState string

const (
	DeliveryPending DeliveryState = "pending"
	DeliverySent    DeliveryState = "sent"
	// DeliveryDead: the notifier said retrying cannot help. Kept, shown in
	// status, never retried.
	DeliveryDead DeliveryState = "dead"
)

// OverflowTransition is alert.OutboxOverflow, repeated here because the
// store must not import alert: rows of this transition are let in past the
// bound, since they are how an overflow is reported at all.
const OverflowTransition = "outbox-overflow"

// OutboxEntry is one delivery to queue. Payload is the alert as the
// dispatcher will hand it to the notifier (JSON); the store never reads it.
type OutboxEntry struct {
	AlertID    string
	Subject    string // the case UUID, or the key of a case-less alert
	Transition string
	Notifier   string
	Payload    []byte
}

// Delivery is a queued row.
type Delivery struct {
	ID int64
	OutboxEntry
	Created     time.Time
	NextAttempt time.Time
	Attempts    int
	LastError   string
	State       DeliveryState
	Done        time.Time // when sent or given up, zero while pending
}

// EnqueueResult counts what happened to the entries of one call.
type EnqueueResult struct {
	Added      int
	Duplicates int // already queued or sent for that (subject, transition, notifier)
	// Dropped entries found their notifier's queue at maxPending; they are
	// also added to the notifier's overflow counter.
	Dropped int
	// DroppedFor names the notifiers that dropped something in this call.
	DroppedFor []string
}

// Write runs fn in one write transaction, for a caller that changes its own
// state and queues alerts with EnqueueTx in the same commit.
func (s *Store) Write(what string, fn func(tx *sql.Tx) error) error {
	return s.write(what, fn)
}

// Enqueue queues entries in a transaction of their own.
func (s *Store) Enqueue(now time.Time, maxPending int, entries []OutboxEntry) (EnqueueResult, error) {
	var res EnqueueResult
	err := s.write("queueing alerts", func(tx *sql.Tx) error {
		var err error
		res, err = enqueueTx(s.in(tx), now, maxPending, entries)
		return err
	})
	return res, err
}

// UpdateCaseStateAndEnqueue is UpdateCaseState and Enqueue in one
// transaction: the transition and its alerts are durable together.
func (s *Store) UpdateCaseStateAndEnqueue(id string, st fault.CaseState, at time.Time, note string,
	maxPending int, entries []OutboxEntry) (EnqueueResult, error) {
	if err := validState(st); err != nil {
		return EnqueueResult{}, fmt.Errorf("updating case %s: %w", id, err)
	}
	var res EnqueueResult
	err := s.write("updating case "+id, func(tx *sql.Tx) error {
		if err := updateCaseState(s.in(tx), id, st, at, note); err != nil {
			return err
		}
		var err error
		res, err = enqueueTx(s.in(tx), at, maxPending, entries)
		return err
	})
	return res, err
}

// UpdateCaseStateTx is UpdateCaseState inside the caller's transaction,
// with the store's prepared statements; tx must be one of s's writes.
func (s *Store) UpdateCaseStateTx(tx *sql.Tx, id string, st fault.CaseState, at time.Time, note string) error {
	return updateCaseState(s.in(tx), id, st, at, note)
}

// UpdateCaseStateTx is Store.UpdateCaseStateTx for a transaction of any
// writer.
func UpdateCaseStateTx(tx *sql.Tx, id string, st fault.CaseState, at time.Time, note string) error {
	return updateCaseState(txq{tx: tx}, id, st, at, note)
}

func updateCaseState(tx txq, id string, st fault.CaseState, at time.Time, note string) error {
	if err := validState(st); err != nil {
		return fmt.Errorf("updating case %s: %w", id, err)
	}
	r, err := tx.exec(qUpdateCaseState, string(st), id)
	if err != nil {
		return err
	}
	if n, err := r.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("case %s: %w", id, ErrNotFound)
	}
	return addState(tx, id, st, at, note)
}

// EnqueueTx queues entries inside tx, due at once. A notifier with
// maxPending rows pending takes no more (except overflow alerts): the
// entry is dropped and counted, never blocking the caller's transaction.
func EnqueueTx(tx *sql.Tx, now time.Time, maxPending int, entries []OutboxEntry) (EnqueueResult, error) {
	return enqueueTx(txq{tx: tx}, now, maxPending, entries)
}

func enqueueTx(tx txq, now time.Time, maxPending int, entries []OutboxEntry) (EnqueueResult, error) {
	var res EnqueueResult
	for _, e := range entries {
		if e.AlertID == "" || e.Subject == "" || e.Transition == "" || e.Notifier == "" {
			return res, fmt.Errorf("queueing alert %q for %q: alert ID, subject, transition and notifier are required", e.AlertID, e.Notifier)
		}
		if e.Transition != OverflowTransition {
			var pending int
			if err := tx.queryRow(qOutboxPending,
				e.Notifier, string(DeliveryPending)).Scan(&pending); err != nil {
				return res, fmt.Errorf("counting outbox of %s: %w", e.Notifier, err)
			}
			if pending >= maxPending {
				if _, err := tx.exec(qOutboxOverflow,
					e.Notifier, unixNano(now)); err != nil {
					return res, fmt.Errorf("counting overflow of %s: %w", e.Notifier, err)
				}
				res.Dropped++
				if n := len(res.DroppedFor); n == 0 || res.DroppedFor[n-1] != e.Notifier {
					res.DroppedFor = append(res.DroppedFor, e.Notifier)
				}
				continue
			}
		}
		r, err := tx.exec(qOutboxInsert,
			e.AlertID, e.Subject, e.Transition, e.Notifier, string(e.Payload), unixNano(now), unixNano(now),
			string(DeliveryPending))
		if err != nil {
			return res, fmt.Errorf("queueing alert %s for %s: %w", e.AlertID, e.Notifier, err)
		}
		if n, err := r.RowsAffected(); err != nil {
			return res, err
		} else if n == 0 {
			res.Duplicates++
		} else {
			res.Added++
		}
	}
	return res, nil
}

const deliveryColumns = `id, alert_id, subject, transition, notifier, payload, created, next_attempt,
	attempts, last_error, state, done`

// DueDeliveries returns up to limit pending rows of one notifier ("" for
// all) whose next attempt is at or before now, the longest due first. A
// row waits while an older row of the same subject is pending for the same
// notifier: a receiver sees a case's transitions in the order they
// happened (a late retry of "isolated" must not follow "repaired", or
// Alertmanager would fire the repaired case again).
func (s *Store) DueDeliveries(now time.Time, notifier string, limit int) ([]Delivery, error) {
	const inOrder = ` AND NOT EXISTS (SELECT 1 FROM outbox AS older WHERE older.subject = outbox.subject
		AND older.notifier = outbox.notifier AND older.state = outbox.state AND older.id < outbox.id)`
	if notifier == "" {
		return s.deliveries(`WHERE state = ? AND next_attempt <= ?`+inOrder+` ORDER BY next_attempt, id LIMIT ?`,
			string(DeliveryPending), unixNano(now), limit)
	}
	return s.deliveries(`WHERE state = ? AND notifier = ? AND next_attempt <= ?`+inOrder+` ORDER BY next_attempt, id LIMIT ?`,
		string(DeliveryPending), notifier, unixNano(now), limit)
}

// Deliveries returns every row in the given state, oldest first (for
// status and tests).
func (s *Store) Deliveries(st DeliveryState) ([]Delivery, error) {
	return s.deliveries(`WHERE state = ? ORDER BY id`, string(st))
}

func (s *Store) deliveries(where string, args ...any) ([]Delivery, error) {
	rows, err := s.r.QueryContext(context.Background(), `SELECT `+deliveryColumns+` FROM outbox `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("querying outbox in %s: %w", s.path, err)
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var (
			d                   Delivery
			payload             string
			created, next, done int64
		)
		if err := rows.Scan(&d.ID, &d.AlertID, &d.Subject, &d.Transition, &d.Notifier, &payload,
			&created, &next, &d.Attempts, &d.LastError, &d.State, &done); err != nil {
			return nil, fmt.Errorf("reading outbox in %s: %w", s.path, err)
		}
		d.Payload = []byte(payload)
		d.Created, d.NextAttempt, d.Done = fromUnixNano(created), fromUnixNano(next), fromUnixNano(done)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading outbox in %s: %w", s.path, err)
	}
	return out, nil
}

// NextAttempt is the earliest next attempt among the pending rows of the
// named notifiers (all when none are named); ok is false when nothing is
// pending. Rows of a notifier no longer configured wait, without waking
// the dispatcher, until it is configured again.
func (s *Store) NextAttempt(notifiers ...string) (next time.Time, ok bool, err error) {
	query, args := `SELECT MIN(next_attempt) FROM outbox WHERE state = ?`, []any{string(DeliveryPending)}
	if len(notifiers) > 0 {
		query += ` AND notifier IN (` + placeholders(len(notifiers)) + `)`
		for _, n := range notifiers {
			args = append(args, n)
		}
	}
	var ns sql.NullInt64
	err = s.r.QueryRowContext(context.Background(), query, args...).Scan(&ns)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("querying outbox in %s: %w", s.path, err)
	}
	if !ns.Valid {
		return time.Time{}, false, nil
	}
	return fromUnixNano(ns.Int64), true, nil
}

// ErrNotPending: the delivery was already acknowledged or given up.
var ErrNotPending = errors.New("delivery is not pending")

// AckDelivery marks a delivery sent. The row stays (until PruneOutbox) so
// the same transition queued again is recognised as a duplicate.
func (s *Store) AckDelivery(id int64, now time.Time) error {
	return s.finishDelivery(id, "acknowledging", func(tx *sql.Tx) (sql.Result, error) {
		return tx.Exec(`UPDATE outbox SET state = ?, done = ?, attempts = attempts + 1, last_error = ''
			WHERE id = ? AND state = ?`, string(DeliverySent), unixNano(now), id, string(DeliveryPending))
	})
}

// FailDelivery records a failed attempt: retried at next, or never again
// when dead (the notifier said retrying cannot help).
func (s *Store) FailDelivery(id int64, now, next time.Time, errText string, dead bool) error {
	st, done := DeliveryPending, int64(0)
	if dead {
		st, done = DeliveryDead, unixNano(now)
	}
	return s.finishDelivery(id, "recording failure of", func(tx *sql.Tx) (sql.Result, error) {
		return tx.Exec(`UPDATE outbox SET state = ?, done = ?, attempts = attempts + 1, last_error = ?,
			next_attempt = ? WHERE id = ? AND state = ?`,
			string(st), done, errText, unixNano(next), id, string(DeliveryPending))
	})
}

func (s *Store) finishDelivery(id int64, what string, exec func(tx *sql.Tx) (sql.Result, error)) error {
	return s.write(fmt.Sprintf("%s delivery %d", what, id), func(tx *sql.Tx) error {
		r, err := exec(tx)
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotPending
		}
		return nil
	})
}

// PruneOutbox deletes sent and dead rows finished before the cut-off,
// except the rows of the subjects in keep (a condition still open, whose
// rows are the record that it was announced).
func (s *Store) PruneOutbox(before time.Time, keep ...string) (int64, error) {
	query, args := `DELETE FROM outbox WHERE state != ? AND done < ?`, []any{string(DeliveryPending), unixNano(before)}
	if len(keep) > 0 {
		query += ` AND subject NOT IN (` + placeholders(len(keep)) + `)`
		for _, k := range keep {
			args = append(args, k)
		}
	}
	var n int64
	err := s.write("pruning outbox", func(tx *sql.Tx) error {
		r, err := tx.Exec(query, args...)
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	return n, err
}

// OutboxQueue summarises one notifier's queue for status and metrics.
type OutboxQueue struct {
	Notifier string
	Pending  int
	Sent     int
	Dead     int
	// Dropped counts entries refused because the queue was full, ever.
	Dropped  int64
	LastSent time.Time
	// LastError is the error of the most recent failed attempt of a row
	// still pending or dead, "" if none.
	LastError string
}

// OutboxQueues summarises every notifier that has rows or drops, by name.
func (s *Store) OutboxQueues() ([]OutboxQueue, error) {
	ctx := context.Background()
	byName := map[string]*OutboxQueue{}
	var order []string
	get := func(n string) *OutboxQueue {
		if q, ok := byName[n]; ok {
			return q
		}
		byName[n] = &OutboxQueue{Notifier: n}
		order = append(order, n)
		return byName[n]
	}
	rows, err := s.r.QueryContext(ctx, `SELECT notifier, state, count(*), MAX(done) FROM outbox GROUP BY notifier, state`)
	if err != nil {
		return nil, fmt.Errorf("summarising outbox in %s: %w", s.path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, st string
		var n int
		var done int64
		if err := rows.Scan(&name, &st, &n, &done); err != nil {
			return nil, fmt.Errorf("summarising outbox in %s: %w", s.path, err)
		}
		q := get(name)
		switch DeliveryState(st) {
		case DeliveryPending:
			q.Pending = n
		case DeliverySent:
			q.Sent, q.LastSent = n, fromUnixNano(done)
		case DeliveryDead:
			q.Dead = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summarising outbox in %s: %w", s.path, err)
	}
	rows.Close()
	over, err := s.r.QueryContext(ctx, `SELECT notifier, dropped FROM outbox_overflow`)
	if err != nil {
		return nil, fmt.Errorf("summarising outbox in %s: %w", s.path, err)
	}
	defer over.Close()
	for over.Next() {
		var name string
		var n int64
		if err := over.Scan(&name, &n); err != nil {
			return nil, fmt.Errorf("summarising outbox in %s: %w", s.path, err)
		}
		get(name).Dropped = n
	}
	if err := over.Err(); err != nil {
		return nil, fmt.Errorf("summarising outbox in %s: %w", s.path, err)
	}
	for _, name := range order {
		var msg string
		err := s.r.QueryRowContext(ctx, `SELECT last_error FROM outbox WHERE notifier = ? AND last_error != ''
			AND state != ? ORDER BY next_attempt DESC, id DESC LIMIT 1`, name, string(DeliverySent)).Scan(&msg)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("summarising outbox in %s: %w", s.path, err)
		}
		byName[name].LastError = msg
	}
	out := make([]OutboxQueue, 0, len(order))
	for _, name := range order {
		out = append(out, *byName[name])
	}
	sortQueues(out)
	return out, nil
}

func sortQueues(qs []OutboxQueue) {
	slices.SortFunc(qs, func(a, b OutboxQueue) int { return strings.Compare(a.Notifier, b.Notifier) })
}

// Unanswered lists the subjects with a row of transition opening and none
// of closing, whatever their notifier or state, with the payload of the
// subject's first opening row: conditions announced and not yet ended
// (a blind source whose clear was never queued), which a restart must
// neither announce again nor forget to end.
func (s *Store) Unanswered(opening, closing string) ([]Delivery, error) {
	return s.deliveries(`WHERE transition = ? AND NOT EXISTS (SELECT 1 FROM outbox AS c
		WHERE c.subject = outbox.subject AND c.transition = ?)
		AND id = (SELECT MIN(id) FROM outbox AS f WHERE f.subject = outbox.subject AND f.transition = outbox.transition)
		ORDER BY id`, opening, closing)
}
