package store

import (
	"database/sql"
	"fmt"
)

// The statements of the deciding path (a case, its intents, its state
// changes, its actions and their alerts), named so that each is parsed
// once on the writer's one connection: modernc's driver parses a query
// string on every Exec, which costs more than the insert itself under
// emulation (the history inserts went from 1.3 ms to 70 µs per one-event
// batch when prepared once).
const (
	qCaseExists   = `SELECT count(*) FROM cases WHERE id = ?`
	qInsertIntent = `INSERT INTO cases(` + caseColumns + `) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING`
	qSaveCase     = `INSERT INTO cases(` + caseColumns + `) VALUES (?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET opened=excluded.opened, rule=excluded.rule,
		diagnosis=excluded.diagnosis, suspect=excluded.suspect, also=excluded.also,
		fru=excluded.fru, summary=excluded.summary, evidence=excluded.evidence`
	qAddState        = `INSERT INTO case_states(case_id, at, state, note) VALUES (?,?,?,?)`
	qUpdateCaseState = `UPDATE cases SET state = ? WHERE id = ?`
	qInsertAction    = `INSERT INTO actions(` + actionColumns + `) VALUES (?,?,?,?,?,?,?,?,?)`
	qOutboxPending   = `SELECT count(*) FROM outbox WHERE notifier = ? AND state = ?`
	qOutboxOverflow  = `INSERT INTO outbox_overflow(notifier, dropped, last) VALUES (?, 1, ?)
		ON CONFLICT(notifier) DO UPDATE SET dropped = dropped + 1, last = excluded.last`
	qOutboxInsert = `INSERT INTO outbox(alert_id, subject, transition, notifier, payload, created,
		next_attempt, attempts, last_error, state, done) VALUES (?,?,?,?,?,?,?,0,'',?,0)
		ON CONFLICT(subject, transition, notifier) DO NOTHING`
)

// preparedQueries are prepared at Open. Not PRAGMA synchronous: SQLite
// applies it while compiling the statement, so a prepared copy changes
// nothing when run.
var preparedQueries = [...]string{qCaseExists, qInsertIntent, qSaveCase, qAddState, qUpdateCaseState,
	qInsertAction, qOutboxPending, qOutboxOverflow, qOutboxInsert}

// prepare parses preparedQueries on the writer.
func (s *Store) prepare() error {
	s.prepared = make(map[string]*sql.Stmt, len(preparedQueries))
	for _, q := range preparedQueries {
		st, err := s.w.Prepare(q)
		if err != nil {
			return fmt.Errorf("preparing %.40q: %w", q, err)
		}
		s.prepared[q] = st
	}
	return nil
}

// txq runs statements in one transaction, through the store's prepared
// copies when it has them (p nil: parsed per call, for the package-level
// *Tx functions a caller may run in a transaction of its own).
type txq struct {
	tx *sql.Tx
	p  map[string]*sql.Stmt
}

func (s *Store) in(tx *sql.Tx) txq {
	if s == nil {
		return txq{tx: tx}
	}
	return txq{tx: tx, p: s.prepared}
}

func (q txq) exec(query string, args ...any) (sql.Result, error) {
	if st := q.p[query]; st != nil {
		// On the writer's one connection tx.Stmt reuses the prepared
		// statement rather than parsing again; it is closed with tx.
		return q.tx.Stmt(st).Exec(args...)
	}
	return q.tx.Exec(query, args...)
}

func (q txq) queryRow(query string, args ...any) *sql.Row {
	if st := q.p[query]; st != nil {
		return q.tx.Stmt(st).QueryRow(args...)
	}
	return q.tx.QueryRow(query, args...)
}
