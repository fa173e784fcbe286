package daemon

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/store"
)

// syncReq asks the history writer to run write with every event it holds
// (those handed to it before the request included) and to drop them once
// write says they are stored: the decision and the events that fed it go
// into the store in one transaction, and no event is stored twice or lost
// in between, because the writer owns its batch throughout.
type syncReq struct {
	write func(held []fault.Event) (stored bool)
	done  chan struct{}
}

// storeDecision records a live decision before any kernel write: the case,
// its intended actions, its diagnosed alert and the events that fed it, in
// one fsync'd transaction. One commit instead of two (the history's batch,
// then the intent) is most of what the deciding path spent in the store.
func (d *Daemon) storeDecision(c fault.Case, intents []fault.Action) {
	d.cases.add(c)
	d.persist("storing the decision of case "+c.ID, func() error { return d.saveDecision(c, intents) })
}

// saveDecision is one attempt of storeDecision (persist retries it whole).
func (d *Daemon) saveDecision(c fault.Case, intents []fault.Action) error {
	var err error
	ran := d.withHistory(func(held []fault.Event) bool {
		err = d.alerts.saveIntent(d.store, c, intents, held...)
		return err == nil
	})
	if ran && err == nil {
		return nil
	}
	// The history writer has stopped (it stored what it held as it did),
	// or the write with its events failed: the events stay with the writer,
	// which retries them in its own batches, and the decision goes alone,
	// as the case carries its evidence.
	return d.alerts.saveIntent(d.store, c, intents)
}

// withHistory runs write on the history writer with the events it holds,
// and reports false when the writer has stopped (write did not run).
func (d *Daemon) withHistory(write func(held []fault.Event) bool) bool {
	req := syncReq{write: write, done: make(chan struct{})}
	select {
	case d.syncQ <- req:
	case <-d.storeDone:
		return false
	}
	// Once taken, the request is answered before the writer stops.
	<-req.done
	return true
}

// storeOutcome records what the kernel write did (one action per target)
// and moves the case to st with its alerts, in one transaction: one commit
// after the write, not one per action and one for the state, so the action
// worker is free sooner for the next decision.
func (d *Daemon) storeOutcome(id string, actions []fault.Action, st fault.CaseState, at time.Time, alerts ...alert.Alert) {
	d.cases.move(id, st)
	d.persist(fmt.Sprintf("storing the outcome of case %s (%d actions, %s)", id, len(actions), st),
		func() error { return d.alerts.saveOutcome(d.store, id, actions, st, at, alerts...) })
	for _, a := range actions {
		d.noteAction(a)
	}
}

// saveOutcome is storeOutcome's one transaction.
func (a *alerter) saveOutcome(s *store.Store, id string, actions []fault.Action, st fault.CaseState, at time.Time, alerts ...alert.Alert) error {
	return a.write("storing the outcome of case "+id, func(tx *sql.Tx) error {
		// The state first: a case the store does not have fails here
		// with ErrNotFound, before any action names it.
		if err := s.UpdateCaseStateTx(tx, id, st, at, ""); err != nil {
			return err
		}
		for _, ac := range actions {
			if ac.CaseID != id {
				return fmt.Errorf("action on %s names case %q, not %s", ac.Resource, ac.CaseID, id)
			}
			if err := s.AddActionTx(tx, ac); err != nil {
				return err
			}
		}
		return nil
	}, alerts...)
}
