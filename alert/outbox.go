package alert

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Outbox is the producer's side of the durable queue, the seam the daemon
// calls on each transition: it routes alerts to notifiers and queues them
// in the transaction of the state change that causes them, then wakes the
// dispatcher. It never waits for a send.
type Outbox struct {
	Store      Persistence
	Notifiers  []NamedNotifier
	MaxPending int
	Host       string
	// Kick wakes the dispatcher (Dispatcher.Kick); nil when none runs.
	Kick func()
}

// EnqueueTx queues alerts inside tx. A notifier whose queue is full drops
// them; then an outbox-overflow alert is queued once per notifier and hour
// (it passes the bound, and goes to every notifier its route allows).
func (o *Outbox) EnqueueTx(tx *sql.Tx, now time.Time, alerts ...Alert) (EnqueueResult, error) {
	var total EnqueueResult
	for _, a := range alerts {
		entries, err := Entries(o.Notifiers, a)
		if err != nil {
			return total, err
		}
		res, err := enqueue(o.Store, tx, now, o.MaxPending, entries)
		if err != nil {
			return total, err
		}
		total.Added += res.Added
		total.Duplicates += res.Duplicates
		total.Dropped += res.Dropped
		for _, name := range res.DroppedFor {
			total.DroppedFor = append(total.DroppedFor, name)
			over, err := Entries(o.Notifiers, o.overflowAlert(name, now))
			if err != nil {
				return total, err
			}
			if _, err := enqueue(o.Store, tx, now, o.MaxPending, over); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

func (o *Outbox) overflowAlert(notifier string, now time.Time) Alert {
	subject := Subject("outbox", notifier, now.UTC().Format("2006-01-02T15"))
	return Alert{
		ID: StableID(o.Host, subject, OutboxOverflow), Case: subject, Transition: OutboxOverflow,
		Severity: DefaultSeverity(OutboxOverflow), Host: o.Host, Time: now,
		Summary: fmt.Sprintf("alert outbox of notifier %s is full (%d undelivered): new alerts for it are dropped and counted until it drains",
			notifier, o.MaxPending),
	}
}

// Raise queues alerts in a transaction of their own, for transitions that
// change no other stored state (a source going blind, a storm starting).
func (o *Outbox) Raise(now time.Time, alerts ...Alert) (EnqueueResult, error) {
	return o.Apply("queueing alerts", now, nil, alerts...)
}

// Apply runs change (nil for none) and queues alerts in one transaction,
// then wakes the dispatcher: a state change (a case saved, moved to
// isolated) and the alerts it causes are durable together or not at all.
func (o *Outbox) Apply(what string, now time.Time, change func(tx *sql.Tx) error, alerts ...Alert) (EnqueueResult, error) {
	return o.ApplyWith(nil, what, now, change, alerts...)
}

// ApplyWith is Apply through another transaction runner on the same
// store (nil: Store.Write), for a change that needs its own durability,
// such as a write-ahead decision committed with a full fsync.
func (o *Outbox) ApplyWith(run func(what string, fn func(tx *sql.Tx) error) error, what string, now time.Time,
	change func(tx *sql.Tx) error, alerts ...Alert) (EnqueueResult, error) {
	if run == nil {
		run = o.Store.Write
	}
	var res EnqueueResult
	err := run(what, func(tx *sql.Tx) error {
		if change != nil {
			if err := change(tx); err != nil {
				return err
			}
		}
		var err error
		res, err = o.EnqueueTx(tx, now, alerts...)
		return err
	})
	if err == nil && res.Added > 0 {
		o.kick()
	}
	return res, err
}

func (o *Outbox) kick() {
	if o.Kick != nil {
		o.Kick()
	}
}

// Prune deletes delivered and given-up rows older than keep (KeepSent), so
// the outbox stays bounded; within keep a repeated transition is still
// recognised as sent. The rows of the subjects in open (problems not yet
// cleared, see OpenProblems) stay whatever their age: they are the record
// that the problem was announced. The daemon calls it with its other
// hourly pruning.
func (o *Outbox) Prune(now time.Time, keep time.Duration, open ...string) (int64, error) {
	return o.Store.PruneOutbox(now.Add(-keep), open...)
}

// OpenProblems are the health problems (source-blind, source-degraded,
// unarmed) queued for some notifier and never followed by their -cleared
// transition, as first queued: after a restart the daemon neither raises
// them again nor forgets to clear them.
func OpenProblems(p Persistence) ([]Alert, error) {
	var out []Alert
	for _, problem := range Transitions {
		end, ok := problem.ClearedBy()
		if !ok {
			continue
		}
		var bad error
		err := p.EachUnanswered(string(problem), string(end), func(subject string, payload []byte) {
			var a Alert
			if err := json.Unmarshal(payload, &a); err != nil {
				bad = errors.Join(bad, fmt.Errorf("open %s alert %s: %w", problem, subject, err))
				return
			}
			out = append(out, a)
		})
		if err != nil {
			return out, fmt.Errorf("reading open %s alerts: %w", problem, err)
		}
		if bad != nil {
			return out, bad
		}
	}
	return out, nil
}
