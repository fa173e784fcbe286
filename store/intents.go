package store

import (
	"database/sql"
	"fmt"

	"github.com/selfprotect/selfprotect/fault"
)

// SaveIntent makes a decision durable before the kernel is touched: the
// case (inserted as SaveCase does, if new) and one intended action per
// resource, in one fsync'd transaction. (The outcome after the write needs
// no fsync: a power cut also undoes the kernel's isolation, and the intent
// left unsettled is carried out again at the next start.) After a crash either both are there or
// neither is, and Unsettled finds the intents whose outcome never followed.
func (s *Store) SaveIntent(c fault.Case, intents []fault.Action) error {
	return s.WriteSynced("saving intent for case "+c.ID, func(tx *sql.Tx) error { return s.SaveIntentTx(tx, c, intents) })
}

// SaveIntentTx is SaveIntent inside the caller's transaction (the daemon
// queues the case's alert in the same one), with the store's prepared
// statements; tx must be one of s's writes.
func (s *Store) SaveIntentTx(tx *sql.Tx, c fault.Case, intents []fault.Action) error {
	return saveIntent(s.in(tx), c, intents)
}

// SaveIntentTx is Store.SaveIntentTx for a transaction of any writer.
func SaveIntentTx(tx *sql.Tx, c fault.Case, intents []fault.Action) error {
	return saveIntent(txq{tx: tx}, c, intents)
}

func saveIntent(tx txq, c fault.Case, intents []fault.Action) error {
	if c.ID == "" {
		return fmt.Errorf("saving intent: empty case ID")
	}
	if err := validState(c.State); err != nil {
		return fmt.Errorf("saving intent for case %s: %w", c.ID, err)
	}
	evidence, err := marshalEvidence(c.Evidence)
	if err != nil {
		return fmt.Errorf("saving intent for case %s: %w", c.ID, err)
	}
	also, err := marshalStrings(c.Also)
	if err != nil {
		return fmt.Errorf("saving intent for case %s: %w", c.ID, err)
	}
	res, err := tx.exec(qInsertIntent,
		c.ID, unixNano(c.Opened), c.Rule, string(c.Diagnosis), string(c.Suspect), also,
		c.FRU, string(c.State), c.Summary, evidence)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 1 {
		if err := addState(tx, c.ID, c.State, c.Opened, ""); err != nil {
			return err
		}
	}
	for _, a := range intents {
		if a.CaseID != c.ID {
			return fmt.Errorf("intent on %s names case %q, not %s", a.Resource, a.CaseID, c.ID)
		}
		if err := insertAction(tx, a); err != nil {
			return err
		}
	}
	return nil
}

func insertAction(tx txq, a fault.Action) error {
	violations, err := marshalStrings(a.Violations)
	if err != nil {
		return err
	}
	_, err = tx.exec(qInsertAction,
		a.CaseID, unixNano(a.Time), string(a.Resource), a.Kind, string(a.Outcome),
		violations, a.Attempts, a.Detail, a.Undo)
	return err
}

// Unsettled lists the intended (or paused) actions that are the last word
// on their case and resource: the daemon stopped between deciding and
// knowing what the kernel did. Cases already resolved are left out.
func (s *Store) Unsettled() ([]fault.Action, error) {
	args := []any{string(fault.OutcomeIntended), string(fault.OutcomePaused)}
	for _, st := range resolved {
		args = append(args, string(st))
	}
	return s.actions(`SELECT a.case_id, a.at, a.resource, a.kind, a.outcome, a.violations, a.attempts, a.detail, a.undo
		FROM actions a JOIN cases c ON c.id = a.case_id
		WHERE a.outcome IN (?, ?) AND c.state NOT IN (`+placeholders(len(resolved))+`)
		AND NOT EXISTS (SELECT 1 FROM actions b WHERE b.case_id = a.case_id AND b.resource = a.resource AND b.id > a.id)
		ORDER BY a.at, a.id`, args...)
}

// CaseCounts counts cases by diagnosis and state, for status and metrics
// at start; the daemon keeps them up to date in memory afterwards.
func (s *Store) CaseCounts() (map[[2]string]int, error) {
	rows, err := s.r.Query(`SELECT diagnosis, state, count(*) FROM cases GROUP BY diagnosis, state`)
	if err != nil {
		return nil, fmt.Errorf("counting cases in %s: %w", s.path, err)
	}
	defer rows.Close()
	out := map[[2]string]int{}
	for rows.Next() {
		var d, st string
		var n int
		if err := rows.Scan(&d, &st, &n); err != nil {
			return nil, fmt.Errorf("counting cases in %s: %w", s.path, err)
		}
		out[[2]string{d, st}] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting cases in %s: %w", s.path, err)
	}
	return out, nil
}
