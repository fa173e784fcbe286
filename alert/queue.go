package alert

import (
	"encoding/json"
	"fmt"
	"time"
)

// Delivery is one queued (alert, notifier) pair.
type Delivery struct {
	ID       int64
	Notifier string
	Attempts int // failed attempts so far
	Alert    Alert
}

// Queue is the durable outbox as the dispatcher sees it.
type Queue interface {
	Due(now time.Time, notifier string, limit int) ([]Delivery, error)
	// NextAttempt is the earliest retry time among the named notifiers'
	// pending deliveries; ok false when none is pending.
	NextAttempt(notifiers ...string) (next time.Time, ok bool, err error)
	Ack(id int64, now time.Time) error
	Fail(id int64, now, next time.Time, errText string, dead bool) error
}

// StoreQueue is the Queue kept in the store's outbox table.
type StoreQueue struct{ Store Persistence }

var _ Queue = StoreQueue{}

func (q StoreQueue) Due(now time.Time, notifier string, limit int) ([]Delivery, error) {
	var out []Delivery
	var failed error
	err := q.Store.EachDue(now, notifier, limit, func(id int64, attempts int, payload []byte) {
		d := Delivery{ID: id, Notifier: notifier, Attempts: attempts}
		if err := json.Unmarshal(payload, &d.Alert); err != nil {
			// A row we cannot read would be retried forever: give it up
			// loudly instead.
			if ferr := q.Store.FailDelivery(id, now, now, "undecodable alert: "+err.Error(), true); ferr != nil && failed == nil {
				failed = fmt.Errorf("giving up undecodable delivery %d: %w", id, ferr)
			}
			return
		}
		out = append(out, d)
	})
	if err == nil {
		err = failed
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (q StoreQueue) NextAttempt(notifiers ...string) (time.Time, bool, error) {
	return q.Store.NextAttempt(notifiers...)
}

func (q StoreQueue) Ack(id int64, now time.Time) error { return q.Store.AckDelivery(id, now) }

func (q StoreQueue) Fail(id int64, now, next time.Time, errText string, dead bool) error {
	return q.Store.FailDelivery(id, now, next, errText, dead)
}

// Entries turns an alert into one outbox row per notifier whose route
// passes it, for Persistence.EnqueueOne in the transaction of the state change
// that caused it.
func Entries(ns []NamedNotifier, a Alert) ([]Entry, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encoding alert %s: %w", a.ID, err)
	}
	var out []Entry
	for _, name := range Recipients(ns, a) {
		out = append(out, Entry{
			AlertID: a.ID, Subject: a.Case, Transition: string(a.Transition), Notifier: name, Payload: payload,
		})
	}
	return out, nil
}
