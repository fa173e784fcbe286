package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// MinPrefix is the shortest case ID prefix Case accepts, like FMA's short
// UUIDs: 8 hex digits make an accidental match between two cases unlikely.
const MinPrefix = 8

// resolved lists the states in which a case no longer holds its suspect out
// of service: the part was fixed, or the diagnosis withdrawn.
var resolved = []fault.CaseState{fault.CaseRepaired, fault.CaseAcquit, fault.CaseClosed}

// Resolved reports whether st ends a case's claim on its resources.
func Resolved(st fault.CaseState) bool {
	for _, r := range resolved {
		if st == r {
			return true
		}
	}
	return false
}

func validState(st fault.CaseState) error {
	switch st {
	case fault.CaseOpen, fault.CaseIsolated, fault.CaseFailed,
		fault.CaseRepaired, fault.CaseAcquit, fault.CaseClosed:
		return nil
	}
	return fmt.Errorf("unknown case state %q", st)
}

const caseColumns = `id, opened, rule, diagnosis, suspect, also, fru, state, summary, evidence`

// SaveCase inserts c, recording its state at c.Opened as the first entry of
// its history. Saving an ID that exists replaces every field except the
// state: states move only through UpdateCaseState, which says when and why,
// so re-saving a stale copy (say, to add evidence) cannot undo a repair.
func (s *Store) SaveCase(c fault.Case) error {
	if c.ID == "" {
		return fmt.Errorf("saving case: empty ID")
	}
	return s.write("saving case "+c.ID, func(tx *sql.Tx) error { return s.SaveCaseTx(tx, c) })
}

// SaveCaseTx is SaveCase inside the caller's transaction, for a case saved
// together with what it causes (its alert in the outbox), with the store's
// prepared statements; tx must be one of s's writes.
func (s *Store) SaveCaseTx(tx *sql.Tx, c fault.Case) error { return saveCase(s.in(tx), c) }

// SaveCaseTx is Store.SaveCaseTx for a transaction of any writer.
func SaveCaseTx(tx *sql.Tx, c fault.Case) error { return saveCase(txq{tx: tx}, c) }

func saveCase(tx txq, c fault.Case) error {
	if c.ID == "" {
		return fmt.Errorf("saving case: empty ID")
	}
	if err := validState(c.State); err != nil {
		return fmt.Errorf("saving case %s: %w", c.ID, err)
	}
	evidence, err := marshalEvidence(c.Evidence)
	if err != nil {
		return fmt.Errorf("saving case %s: %w", c.ID, err)
	}
	also, err := marshalStrings(c.Also)
	if err != nil {
		return fmt.Errorf("saving case %s: %w", c.ID, err)
	}
	var exists int
	if err := tx.queryRow(qCaseExists, c.ID).Scan(&exists); err != nil {
		return err
	}
	_, err = tx.exec(qSaveCase,
		c.ID, unixNano(c.Opened), c.Rule, string(c.Diagnosis), string(c.Suspect), also,
		c.FRU, string(c.State), c.Summary, evidence)
	if err != nil || exists > 0 {
		return err
	}
	return addState(tx, c.ID, c.State, c.Opened, "")
}

func addState(tx txq, id string, st fault.CaseState, at time.Time, note string) error {
	_, err := tx.exec(qAddState,
		id, unixNano(at), string(st), note)
	return err
}

// UpdateCaseState moves the case with exactly this ID to st and records the
// change with its note. It does not judge transitions: the daemon does.
func (s *Store) UpdateCaseState(id string, st fault.CaseState, at time.Time, note string) error {
	if err := validState(st); err != nil {
		return fmt.Errorf("updating case %s: %w", id, err)
	}
	return s.write("updating case "+id, func(tx *sql.Tx) error { return updateCaseState(s.in(tx), id, st, at, note) })
}

// Case returns the case whose ID is id or, failing that, the one case whose
// ID starts with id (at least MinPrefix characters, any letter case).
func (s *Store) Case(id string) (fault.Case, error) {
	ctx := context.Background()
	c, err := scanCase(s.r.QueryRowContext(ctx, `SELECT `+caseColumns+` FROM cases WHERE id = ?`, id))
	if err == nil || !errors.Is(err, sql.ErrNoRows) {
		return c, wrapCaseErr(s.path, id, err)
	}
	if len(id) < MinPrefix {
		return fault.Case{}, fmt.Errorf("case %q: %w (a prefix needs at least %d characters)", id, ErrNotFound, MinPrefix)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM cases WHERE lower(substr(id, 1, ?)) = ? LIMIT 3`,
		len(id), strings.ToLower(id))
	if err != nil {
		return fault.Case{}, wrapCaseErr(s.path, id, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return fault.Case{}, wrapCaseErr(s.path, id, err)
		}
		ids = append(ids, m)
	}
	if err := rows.Err(); err != nil {
		return fault.Case{}, wrapCaseErr(s.path, id, err)
	}
	switch len(ids) {
	case 0:
		return fault.Case{}, fmt.Errorf("case %q: %w", id, ErrNotFound)
	case 1:
		c, err := scanCase(s.r.QueryRowContext(ctx, `SELECT `+caseColumns+` FROM cases WHERE id = ?`, ids[0]))
		return c, wrapCaseErr(s.path, id, err)
	}
	return fault.Case{}, fmt.Errorf("case %q: %w: matches %s and more", id, ErrAmbiguous, strings.Join(ids[:2], ", "))
}

func wrapCaseErr(path, id string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("case %q: %w", id, ErrNotFound)
	}
	return fmt.Errorf("reading case %q from %s: %w", id, path, err)
}

// CaseFilter selects cases; both fields apply together, zero selects all.
type CaseFilter struct {
	States []fault.CaseState
	// Open keeps unresolved cases (open, isolated, failed): what `faulty`
	// lists.
	Open bool
	// Since keeps cases opened at or after it (zero: all).
	Since time.Time
}

// Cases returns the matching cases, oldest opened first.
func (s *Store) Cases(f CaseFilter) ([]fault.Case, error) {
	var where []string
	var args []any
	if len(f.States) > 0 {
		where = append(where, `state IN (`+placeholders(len(f.States))+`)`)
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	if f.Open {
		where = append(where, `state NOT IN (`+placeholders(len(resolved))+`)`)
		for _, st := range resolved {
			args = append(args, string(st))
		}
	}
	if !f.Since.IsZero() {
		where = append(where, `opened >= ?`)
		args = append(args, unixNano(f.Since))
	}
	query := `SELECT ` + caseColumns + ` FROM cases`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY opened, id`
	rows, err := s.r.QueryContext(context.Background(), query, args...)
	if err != nil {
		return nil, fmt.Errorf("querying cases in %s: %w", s.path, err)
	}
	defer rows.Close()
	var out []fault.Case
	for rows.Next() {
		c, err := scanCase(rows)
		if err != nil {
			return nil, fmt.Errorf("reading cases from %s: %w", s.path, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading cases from %s: %w", s.path, err)
	}
	return out, nil
}

// StateChange is one entry of a case's history.
type StateChange struct {
	At    time.Time
	State fault.CaseState
	Note  string
}

// CaseHistory returns every state the case with exactly this ID went
// through, oldest first (for `explain`).
func (s *Store) CaseHistory(id string) ([]StateChange, error) {
	rows, err := s.r.QueryContext(context.Background(),
		`SELECT at, state, note FROM case_states WHERE case_id = ? ORDER BY at, id`, id)
	if err != nil {
		return nil, fmt.Errorf("querying history of case %s: %w", id, err)
	}
	defer rows.Close()
	var out []StateChange
	for rows.Next() {
		var at int64
		var sc StateChange
		if err := rows.Scan(&at, &sc.State, &sc.Note); err != nil {
			return nil, fmt.Errorf("reading history of case %s: %w", id, err)
		}
		sc.At = fromUnixNano(at)
		out = append(out, sc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading history of case %s: %w", id, err)
	}
	return out, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanCase(row scanner) (fault.Case, error) {
	var (
		c                               fault.Case
		opened                          int64
		diagnosis, suspect, also, state string
		evidence                        string
	)
	if err := row.Scan(&c.ID, &opened, &c.Rule, &diagnosis, &suspect, &also, &c.FRU, &state, &c.Summary, &evidence); err != nil {
		return fault.Case{}, err
	}
	var err error
	if c.Also, err = unmarshalStrings[fault.Resource](also); err != nil {
		return fault.Case{}, fmt.Errorf("case %s: decoding also: %w", c.ID, err)
	}
	if c.Evidence, err = unmarshalEvidence(evidence); err != nil {
		return fault.Case{}, fmt.Errorf("case %s: %w", c.ID, err)
	}
	c.Opened = fromUnixNano(opened)
	c.Diagnosis, c.Suspect, c.State = fault.Diagnosis(diagnosis), fault.Resource(suspect), fault.CaseState(state)
	return c, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}
