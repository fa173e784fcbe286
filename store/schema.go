package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migrations[i] brings the schema from version i to i+1. Append only: a
// shipped migration is never edited, since files in the field already ran it.
var migrations = []string{
	`
CREATE TABLE events (
	id          INTEGER PRIMARY KEY,
	received    INTEGER NOT NULL,
	recorded    INTEGER NOT NULL,
	source      TEXT    NOT NULL,
	class       TEXT    NOT NULL,
	severity    TEXT    NOT NULL,
	vendor      TEXT    NOT NULL,
	count       INTEGER NOT NULL,
	cpu         INTEGER NOT NULL,
	socket      INTEGER NOT NULL,
	bank        INTEGER NOT NULL,
	cache_level INTEGER NOT NULL,
	core_bank   INTEGER NOT NULL,
	status      INTEGER NOT NULL,
	addr        INTEGER NOT NULL,
	misc        INTEGER NOT NULL,
	synd        INTEGER NOT NULL,
	ipid        INTEGER NOT NULL,
	phys_addr   INTEGER NOT NULL,
	addr_valid  INTEGER NOT NULL,
	addr_lsb    INTEGER NOT NULL,
	mc          INTEGER NOT NULL,
	dimm_label  TEXT    NOT NULL,
	layer0      INTEGER NOT NULL,
	layer1      INTEGER NOT NULL,
	layer2      INTEGER NOT NULL,
	row         TEXT    NOT NULL,
	detail      TEXT    NOT NULL
);
CREATE INDEX events_received ON events(received);

CREATE TABLE cases (
	id        TEXT PRIMARY KEY,
	opened    INTEGER NOT NULL,
	rule      TEXT    NOT NULL,
	diagnosis TEXT    NOT NULL,
	suspect   TEXT    NOT NULL,
	also      TEXT    NOT NULL,
	fru       TEXT    NOT NULL,
	state     TEXT    NOT NULL,
	summary   TEXT    NOT NULL,
	evidence  TEXT    NOT NULL
);
CREATE INDEX cases_opened ON cases(opened);

CREATE TABLE case_states (
	id      INTEGER PRIMARY KEY,
	case_id TEXT    NOT NULL REFERENCES cases(id),
	at      INTEGER NOT NULL,
	state   TEXT    NOT NULL,
	note    TEXT    NOT NULL
);
CREATE INDEX case_states_case ON case_states(case_id, at);

CREATE TABLE actions (
	id         INTEGER PRIMARY KEY,
	case_id    TEXT    NOT NULL REFERENCES cases(id),
	at         INTEGER NOT NULL,
	resource   TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	outcome    TEXT    NOT NULL,
	violations TEXT    NOT NULL,
	attempts   INTEGER NOT NULL,
	detail     TEXT    NOT NULL,
	undo       TEXT    NOT NULL
);
CREATE INDEX actions_case ON actions(case_id, at);
CREATE INDEX actions_resource ON actions(resource, at);
`,
	// 2: the alert outbox (outbox.go).
	`
CREATE TABLE outbox (
	id           INTEGER PRIMARY KEY,
	alert_id     TEXT    NOT NULL,
	subject      TEXT    NOT NULL,
	transition   TEXT    NOT NULL,
	notifier     TEXT    NOT NULL,
	payload      TEXT    NOT NULL,
	created      INTEGER NOT NULL,
	next_attempt INTEGER NOT NULL,
	attempts     INTEGER NOT NULL,
	last_error   TEXT    NOT NULL,
	state        TEXT    NOT NULL,
	done         INTEGER NOT NULL,
	UNIQUE (subject, transition, notifier)
);
CREATE INDEX outbox_due ON outbox(state, next_attempt);
CREATE INDEX outbox_notifier ON outbox(notifier, state);

CREATE TABLE outbox_overflow (
	notifier TEXT    PRIMARY KEY,
	dropped  INTEGER NOT NULL,
	last     INTEGER NOT NULL
);
`,
	// 3: where an MCA record locates a memory error without EDAC
	// (Event.Channel) and how its DIMM label was found (Event.LocatedBy).
	`
ALTER TABLE events ADD COLUMN channel    INTEGER NOT NULL DEFAULT -1;
ALTER TABLE events ADD COLUMN located_by TEXT    NOT NULL DEFAULT '';
`,
	// 4: the DRAM chip select an AMD UMC record names (Event.ChipSelect),
	// which picks the rank among those amd64_edac lists on a channel.
	`
ALTER TABLE events ADD COLUMN chip_select INTEGER NOT NULL DEFAULT -1;
`,
}

// SchemaVersion is the version this binary writes.
func SchemaVersion() int { return len(migrations) }

const createMigrations = `CREATE TABLE IF NOT EXISTS migrations (
	version INTEGER PRIMARY KEY,
	applied INTEGER NOT NULL
)`

// migrate applies every migration the file lacks, each in its own
// transaction, so a crash mid-way leaves a file at a known version.
func migrate(db *sql.DB) error {
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, createMigrations); err != nil {
		return fmt.Errorf("creating migrations table: %w", err)
	}
	have, err := version(db)
	if err != nil {
		return err
	}
	if have > len(migrations) {
		return fmt.Errorf("%w: file has version %d, this binary knows up to %d", ErrSchemaTooNew, have, len(migrations))
	}
	for v := have; v < len(migrations); v++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrating to version %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrating to version %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO migrations(version, applied) VALUES (?, ?)`,
			v+1, time.Now().UnixNano()); err != nil {
			tx.Rollback()
			return fmt.Errorf("recording version %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrating to version %d: %w", v+1, err)
		}
	}
	return nil
}

// checkVersion is the read-only side: it cannot migrate, so it insists on
// exactly the version this binary reads.
func checkVersion(db *sql.DB) error {
	var tables int
	err := db.QueryRowContext(context.Background(),
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'migrations'`).Scan(&tables)
	if err != nil {
		return fmt.Errorf("reading schema: %w", err)
	}
	if tables == 0 {
		return fmt.Errorf("not a selfprotect store (no migrations table)")
	}
	have, err := version(db)
	if err != nil {
		return err
	}
	switch {
	case have > len(migrations):
		return fmt.Errorf("%w: file has version %d, this binary knows up to %d", ErrSchemaTooNew, have, len(migrations))
	case have < len(migrations):
		return fmt.Errorf("schema version %d is older than %d: start the daemon once to migrate it", have, len(migrations))
	}
	return nil
}

func version(db *sql.DB) (int, error) {
	var v int
	err := db.QueryRowContext(context.Background(), `SELECT COALESCE(MAX(version), 0) FROM migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return v, nil
}
