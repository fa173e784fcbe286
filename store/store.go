package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"time"

	"modernc.org/sqlite"
)

var (
	// ErrNotFound: no case (or store file) with that name.
	ErrNotFound = errors.New("not found")
	// ErrAmbiguous: a case ID prefix matches more than one case.
	ErrAmbiguous = errors.New("ambiguous case ID prefix")
	// ErrReadOnly: a write on a store opened with OpenReadOnly.
	ErrReadOnly = errors.New("store is read-only")
	// ErrCorrupt: the file is not a SQLite database or is damaged. The
	// daemon may move it aside and start a fresh history.
	ErrCorrupt = errors.New("store file is corrupt")
	// ErrSchemaTooNew: the file was written by a newer selfprotect.
	ErrSchemaTooNew = errors.New("store schema is newer than this binary")
)

// busyTimeout bounds how long a statement waits for another process's lock
// before failing: long enough to ride out a checkpoint, short enough that a
// stuck peer shows up as an error instead of a hang.
const busyTimeout = 5 * time.Second

// Store is the daemon's state file. Its methods are safe for concurrent use;
// writes go through one connection and so are serialized.
type Store struct {
	path string
	// w is nil for a read-only store; otherwise a pool of exactly one
	// connection, which makes the daemon the single writer.
	w *sql.DB
	// r serves queries, so a long read never waits for the writer.
	r *sql.DB
	// insertMax and insertOne are the history's inserts, prepared once on
	// the writer: parsing the 64-row statement cost more than storing the
	// few events of a usual batch (and the daemon stores one batch before
	// each decision).
	insertMax, insertOne *sql.Stmt
	// prepared are the deciding path's statements (prepared.go), on the
	// writer too.
	prepared map[string]*sql.Stmt
	// syncMu keeps WriteSynced's three steps (synchronous=FULL, the
	// transaction, back to NORMAL) together: two synced writes interleaved
	// could commit one of them with NORMAL.
	syncMu sync.Mutex
}

// Open opens the store at path for reading and writing, creating the file
// and bringing its schema up to date.
func Open(path string) (*Store, error) {
	if err := prepareFile(path); err != nil {
		return nil, err
	}
	w, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	// Keep the one connection: reopening it would re-run every pragma.
	w.SetConnMaxIdleTime(0)
	if err := migrate(w); err != nil {
		w.Close()
		return nil, describe(path, err)
	}
	st := &Store{path: path, w: w}
	if st.insertMax, err = w.Prepare(insertEventsMax); err == nil {
		st.insertOne, err = w.Prepare(insertEvent)
	}
	if err == nil {
		err = st.prepare()
	}
	if err != nil {
		st.closeStatements()
		w.Close()
		return nil, describe(path, fmt.Errorf("preparing the event inserts: %w", err))
	}
	if st.r, err = openReader(path); err != nil {
		st.closeStatements()
		w.Close()
		return nil, err
	}
	return st, nil
}

func (s *Store) closeStatements() {
	for _, st := range []*sql.Stmt{s.insertMax, s.insertOne} {
		if st != nil {
			st.Close()
		}
	}
	for _, st := range s.prepared {
		st.Close()
	}
}

// OpenReadOnly opens an existing store for queries only. It works while the
// daemon holds the file open for writing, and sees what it last committed.
// A missing file gives an error wrapping ErrNotFound and os.ErrNotExist.
func OpenReadOnly(path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("opening store %s: %w: %w", path, ErrNotFound, err)
		}
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	r, err := openReader(path)
	if err != nil {
		return nil, err
	}
	return &Store{path: path, r: r}, nil
}

func openReader(path string) (*sql.DB, error) {
	r, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	if err := checkVersion(r); err != nil {
		r.Close()
		return nil, describe(path, err)
	}
	return r, nil
}

// Path is the file this store was opened from.
func (s *Store) Path() string { return s.path }

// Close releases the file. The writer closes last, so SQLite can checkpoint
// the WAL back into the main file.
func (s *Store) Close() error {
	errR := s.r.Close()
	var errW error
	if s.w != nil {
		s.closeStatements()
		errW = s.w.Close()
	}
	if err := errors.Join(errR, errW); err != nil {
		return fmt.Errorf("closing store %s: %w", s.path, err)
	}
	return nil
}

// dsn builds the URI for one connection. Pragmas ride in the DSN because
// database/sql may open connections at any time and each needs them.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	if readOnly {
		q.Set("mode", "ro")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		// NORMAL in WAL mode loses at most the last transactions on power
		// loss, never consistency; FULL would fsync every event batch.
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "foreign_keys(1)")
		// Multi-row inserts keep a statement journal to undo a half-done
		// statement; in a temp file that cost a syscall per page.
		q.Add("_pragma", "temp_store(MEMORY)")
		// Take the write lock at BEGIN: a deferred transaction that upgrades
		// later can fail with SQLITE_BUSY without waiting.
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Opaque: (&url.URL{Path: path}).EscapedPath(), RawQuery: q.Encode()}
	return u.String()
}

// SQLite primary result codes that mean the file itself is bad.
const (
	sqliteCorrupt = 11
	sqliteNotADB  = 26
)

// describe wraps err with the path, and with ErrCorrupt when SQLite says
// the file is damaged or not a database at all.
func describe(path string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqliteCorrupt, sqliteNotADB:
			return fmt.Errorf("opening store %s: %w: %w", path, ErrCorrupt, err)
		}
	}
	return fmt.Errorf("opening store %s: %w", path, err)
}

// write runs fn in one immediate transaction on the writer connection.
func (s *Store) write(what string, fn func(tx *sql.Tx) error) error {
	if s.w == nil {
		return fmt.Errorf("%s: %w", what, ErrReadOnly)
	}
	tx, err := s.w.BeginTx(context.Background(), nil)
	if err != nil {
		return fmt.Errorf("%s: beginning transaction in %s: %w", what, s.path, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: committing to %s: %w", what, s.path, err)
	}
	return nil
}

// WriteSynced is write with synchronous=FULL for this one transaction: the
// commit is fsync'd, so it survives a power cut, not only a crash of the
// process. Kept for the few records that must (a decision before its
// kernel write); the event history stays on NORMAL.
func (s *Store) WriteSynced(what string, fn func(tx *sql.Tx) error) error {
	if s.w == nil {
		return fmt.Errorf("%s: %w", what, ErrReadOnly)
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	// The pool holds one connection, so the pragma and the transaction
	// run on the same one; another writer slipping in between only gets
	// an fsync it did not need.
	if _, err := s.w.Exec(`PRAGMA synchronous=FULL`); err != nil {
		return fmt.Errorf("%s: %s: %w", what, s.path, err)
	}
	defer s.w.Exec(`PRAGMA synchronous=NORMAL`) //nolint:errcheck // FULL left on only costs fsyncs
	tx, err := s.w.BeginTx(context.Background(), nil)
	if err != nil {
		return fmt.Errorf("%s: beginning transaction in %s: %w", what, s.path, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: committing to %s: %w", what, s.path, err)
	}
	return nil
}
