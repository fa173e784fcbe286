package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/selfprotect/selfprotect/fault"
)

const actionColumns = `case_id, at, resource, kind, outcome, violations, attempts, detail, undo`

// AddAction records what was done about one resource of a case. The case
// must have been saved first; otherwise the error wraps ErrNotFound.
func (s *Store) AddAction(a fault.Action) error {
	violations, err := marshalStrings(a.Violations)
	if err != nil {
		return fmt.Errorf("storing action for case %s: %w", a.CaseID, err)
	}
	return s.write(fmt.Sprintf("storing %s action on %s for case %s", a.Outcome, a.Resource, a.CaseID), func(tx *sql.Tx) error {
		// Checked here, not left to the foreign key, so the caller gets a
		// sentinel instead of a bare constraint failure.
		var n int
		if err := s.in(tx).queryRow(qCaseExists, a.CaseID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("case %q: %w", a.CaseID, ErrNotFound)
		}
		_, err := s.in(tx).exec(qInsertAction,
			a.CaseID, unixNano(a.Time), string(a.Resource), a.Kind, string(a.Outcome),
			violations, a.Attempts, a.Detail, a.Undo)
		return err
	})
}

// AddActionTx stores a inside the caller's transaction, one of s's writes,
// whose case the caller knows is stored (AddAction checks it).
func (s *Store) AddActionTx(tx *sql.Tx, a fault.Action) error {
	if err := insertAction(s.in(tx), a); err != nil {
		return fmt.Errorf("storing %s action on %s for case %s: %w", a.Outcome, a.Resource, a.CaseID, err)
	}
	return nil
}

// Actions returns the actions of the case with exactly this ID, oldest first.
func (s *Store) Actions(caseID string) ([]fault.Action, error) {
	return s.actions(`SELECT `+actionColumns+` FROM actions WHERE case_id = ? ORDER BY at, id`, caseID)
}

// AllActions returns the newest limit actions of every case, oldest first;
// limit 0 returns them all.
func (s *Store) AllActions(limit int) ([]fault.Action, error) {
	if limit < 0 {
		return nil, fmt.Errorf("querying actions: negative limit %d", limit)
	}
	if limit == 0 {
		limit = -1 // SQLite: no limit
	}
	// The inner query keeps the newest; the outer puts them back in order.
	return s.actions(`SELECT `+actionColumns+` FROM (SELECT id, `+actionColumns+
		` FROM actions ORDER BY at DESC, id DESC LIMIT ?) ORDER BY at, id`, limit)
}

func (s *Store) actions(query string, args ...any) ([]fault.Action, error) {
	rows, err := s.r.QueryContext(context.Background(), query, args...)
	if err != nil {
		return nil, fmt.Errorf("querying actions in %s: %w", s.path, err)
	}
	defer rows.Close()
	var out []fault.Action
	for rows.Next() {
		var (
			a                             fault.Action
			at                            int64
			resource, outcome, violations string
		)
		if err := rows.Scan(&a.CaseID, &at, &resource, &a.Kind, &outcome, &violations, &a.Attempts, &a.Detail, &a.Undo); err != nil {
			return nil, fmt.Errorf("reading actions from %s: %w", s.path, err)
		}
		if a.Violations, err = unmarshalStrings[string](violations); err != nil {
			return nil, fmt.Errorf("reading actions from %s: case %s: decoding violations: %w", s.path, a.CaseID, err)
		}
		a.Time, a.Resource, a.Outcome = fromUnixNano(at), fault.Resource(resource), fault.Outcome(outcome)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading actions from %s: %w", s.path, err)
	}
	return out, nil
}
