package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/selfprotect/selfprotect/fault"
)

// EventSnapshot is the event history as committed at one instant, read
// while the writer goes on: a read transaction of its own, pinned at that
// instant, so what is stored after it (or pruned) is not seen. The daemon
// takes one as the boundary of an engine rebuild that runs beside the
// event intake: every record is then either in the snapshot or arrives
// after it, never both.
type EventSnapshot struct {
	tx *sql.Tx
	// Mark is the highest event id the snapshot holds, 0 when it holds
	// none: the history's high-water mark at that instant.
	Mark int64
}

// SnapshotEvents pins the committed history now. Ending ctx ends the
// snapshot and any read through it; Close releases it otherwise. Cheap to
// take (one indexed read); while it is held, SQLite cannot recycle the
// write-ahead log past it, as with any long read.
func (s *Store) SnapshotEvents(ctx context.Context) (*EventSnapshot, error) {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("taking a snapshot of the events in %s: %w", s.path, err)
	}
	// A deferred transaction reads its snapshot at its first statement:
	// this one, so the mark and every later read agree.
	snap := &EventSnapshot{tx: tx}
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM events`).Scan(&snap.Mark); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("taking a snapshot of the events in %s: %w", s.path, err)
	}
	return snap, nil
}

// Each is EachEvent on the snapshot: fn gets every event q selects that
// was committed when the snapshot was taken, oldest first, one row at a
// time. Ending ctx stops the walk with ctx's error.
func (e *EventSnapshot) Each(ctx context.Context, q EventQuery, fn func(fault.Event) error) error {
	return eachEvent(ctx, e.tx, "the event snapshot", q, fn)
}

// Close releases the snapshot; safe to call more than once, and after ctx
// ended it.
func (e *EventSnapshot) Close() error {
	if err := e.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("releasing the event snapshot: %w", err)
	}
	return nil
}
