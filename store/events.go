package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

const eventColumns = `received, recorded, source, class, severity, vendor, count,
	cpu, socket, bank, cache_level, core_bank, status, addr, misc, synd, ipid,
	phys_addr, addr_valid, addr_lsb, mc, dimm_label, layer0, layer1, layer2, row, detail,
	channel, located_by, chip_select`

const eventFields = 30

// insertRows returns an INSERT for n events.
func insertRows(n int) string {
	row := "(" + placeholders(eventFields) + ")"
	return `INSERT INTO events(` + eventColumns + `) VALUES ` + strings.TrimSuffix(strings.Repeat(row+",", n), ",")
}

// rowsPerInsert events go into one statement: each Exec costs a trip
// through database/sql and the driver, and multi-row statements saved about
// a fifth of the time per event over one-row ones when measured. 64 rows
// stay far below SQLite's limit of 32766 bound parameters.
const rowsPerInsert = 64

var (
	insertEvent     = insertRows(1)
	insertEventsMax = insertRows(rowsPerInsert)
)

// AddEvents appends evs in one transaction: the daemon batches so that a
// storm costs one commit per batch, not one per event.
func (s *Store) AddEvents(evs []fault.Event) error {
	if len(evs) == 0 {
		return nil
	}
	return s.write(fmt.Sprintf("storing %d events", len(evs)), func(tx *sql.Tx) error { return s.AddEventsTx(tx, evs) })
}

// AddEventsTx is AddEvents inside the caller's transaction, one of s's
// writes (the daemon stores the events that fed a decision in the
// decision's own transaction).
func (s *Store) AddEventsTx(tx *sql.Tx, evs []fault.Event) error {
	if len(evs) == 0 {
		return nil
	}
	// Statements prepared on the writer's one connection: tx.Stmt
	// reuses them there rather than parsing again.
	full, one := tx.Stmt(s.insertMax), tx.Stmt(s.insertOne)
	defer full.Close()
	defer one.Close()
	args := make([]any, 0, min(len(evs), rowsPerInsert)*eventFields)
	start := 0
	for ; start+rowsPerInsert <= len(evs); start += rowsPerInsert {
		args = args[:0]
		for i := start; i < start+rowsPerInsert; i++ {
			args = appendEventArgs(args, &evs[i])
		}
		if _, err := full.Exec(args...); err != nil {
			return fmt.Errorf("events %d to %d (first: %s): %w", start, start+rowsPerInsert-1, evs[start].String(), err)
		}
	}
	for ; start < len(evs); start++ {
		args = appendEventArgs(args[:0], &evs[start])
		if _, err := one.Exec(args...); err != nil {
			return fmt.Errorf("event %d (%s): %w", start, evs[start].String(), err)
		}
	}
	return nil
}

// appendEventArgs lists e's values in eventColumns order.
func appendEventArgs(args []any, e *fault.Event) []any {
	return append(args,
		unixNano(e.Received), unixNano(e.Recorded), string(e.Source),
		e.Class.String(), e.Severity.String(), e.Vendor.String(), int64(e.Count),
		e.CPU, e.Socket, e.Bank, e.CacheLevel, boolInt(e.CoreBank),
		bits(e.Status), bits(e.Addr), bits(e.Misc), bits(e.Synd), bits(e.IPID),
		bits(e.PhysAddr), boolInt(e.AddrValid), int(e.AddrLSB),
		e.MC, e.DIMMLabel, e.Layers[0], e.Layers[1], e.Layers[2], e.Row, e.Detail,
		e.Channel, e.LocatedBy, e.ChipSelect)
}

// EventQuery selects history. Zero fields select everything.
type EventQuery struct {
	// Since keeps events received at or after it.
	Since time.Time
	// Limit keeps only the newest Limit matches; 0 means no limit.
	Limit int
	// Class is a fault.Class name ("memory", "cache", ...).
	Class string
	// Resource keeps events that concern it: cpu:N by the record's CPU,
	// page:0xPFN by a valid physical address inside the page, dimm:mcM/LABEL
	// by EDAC mc and label, row:KEY by Event.Row, socket:N by socket;
	// machine matches every event.
	Resource fault.Resource
}

// Events returns the matching history, oldest first.
func (s *Store) Events(q EventQuery) ([]fault.Event, error) {
	where, args, err := q.where()
	if err != nil {
		return nil, fmt.Errorf("querying events: %w", err)
	}
	query := `SELECT ` + eventColumns + ` FROM events`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	// Newest first so LIMIT keeps the tail; reversed below.
	query += ` ORDER BY received DESC, id DESC`
	if q.Limit > 0 {
		query += ` LIMIT ` + strconv.Itoa(q.Limit)
	}
	rows, err := s.r.QueryContext(context.Background(), query, args...)
	if err != nil {
		return nil, fmt.Errorf("querying events in %s: %w", s.path, err)
	}
	defer rows.Close()
	var out []fault.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("reading events from %s: %w", s.path, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading events from %s: %w", s.path, err)
	}
	slices.Reverse(out)
	return out, nil
}

// EachEvent calls fn with every event q selects, oldest first, one row at
// a time: a rebuild over a long window reads a day-long storm's history
// without holding it in memory. q.Limit is not supported (a limit keeps
// the newest events, which Events does). An error from fn stops the walk
// and is returned as is.
func (s *Store) EachEvent(q EventQuery, fn func(fault.Event) error) error {
	return eachEvent(context.Background(), s.r, s.path, q, fn)
}

// querier is a read pool or one read transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// eachEvent is EachEvent on db; where names what db reads, for errors.
func eachEvent(ctx context.Context, db querier, where string, q EventQuery, fn func(fault.Event) error) error {
	if q.Limit != 0 {
		return fmt.Errorf("streaming events: a limit (%d) is not supported", q.Limit)
	}
	conds, args, err := q.where()
	if err != nil {
		return fmt.Errorf("querying events: %w", err)
	}
	query := `SELECT ` + eventColumns + ` FROM events`
	if len(conds) > 0 {
		query += ` WHERE ` + strings.Join(conds, ` AND `)
	}
	query += ` ORDER BY received, id`
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("querying events in %s: %w", where, err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return fmt.Errorf("reading events from %s: %w", where, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading events from %s: %w", where, err)
	}
	return nil
}

func (q EventQuery) where() ([]string, []any, error) {
	var where []string
	var args []any
	if !q.Since.IsZero() {
		where = append(where, `received >= ?`)
		args = append(args, q.Since.UnixNano())
	}
	if q.Limit < 0 {
		return nil, nil, fmt.Errorf("negative limit %d", q.Limit)
	}
	if q.Class != "" {
		c, err := fault.ParseClass(q.Class)
		if err != nil {
			return nil, nil, err
		}
		where = append(where, `class = ?`)
		args = append(args, c.String())
	}
	if q.Resource != "" {
		w, a, err := resourceFilter(q.Resource)
		if err != nil {
			return nil, nil, err
		}
		if w != "" {
			where = append(where, w)
			args = append(args, a...)
		}
	}
	return where, args, nil
}

func resourceFilter(r fault.Resource) (string, []any, error) {
	if _, err := fault.ParseResource(string(r)); err != nil {
		return "", nil, err
	}
	_, key, _ := strings.Cut(string(r), ":")
	switch r.Kind() {
	case fault.KindCPU:
		n, _ := r.CPUNumber()
		return `cpu = ?`, []any{n}, nil
	case fault.KindSocket:
		n, err := strconv.Atoi(key)
		if err != nil || n < 0 {
			return "", nil, fmt.Errorf("resource %q: bad socket number", r)
		}
		return `socket = ?`, []any{n}, nil
	case fault.KindPage:
		pfn, _ := r.PFN()
		if pfn > math.MaxUint64/fault.PageSize {
			return "", nil, fmt.Errorf("resource %q: PFN beyond 64-bit addresses", r)
		}
		lo := pfn * fault.PageSize
		// A page never straddles 2^63, so both ends have the same sign as
		// int64 and signed comparison keeps their order.
		return `addr_valid = 1 AND phys_addr BETWEEN ? AND ?`, []any{bits(lo), bits(lo + fault.PageSize - 1)}, nil
	case fault.KindDIMM:
		mc, label, ok := strings.Cut(key, "/")
		n, err := strconv.Atoi(strings.TrimPrefix(mc, "mc"))
		if !ok || !strings.HasPrefix(mc, "mc") || err != nil || label == "" {
			return "", nil, fmt.Errorf("resource %q: want dimm:mcN/LABEL", r)
		}
		return `mc = ? AND dimm_label = ?`, []any{n, label}, nil
	case fault.KindRow:
		return `row = ?`, []any{key}, nil
	}
	return "", nil, nil // machine: every event
}

func scanEvent(rows *sql.Rows) (fault.Event, error) {
	var (
		e                                  fault.Event
		received, recorded                 int64
		source, class, severity, vendor    string
		count                              int64
		coreBank, addrValid, addrLSB       int
		status, addr, misc, synd, ipid, pa int64
	)
	err := rows.Scan(&received, &recorded, &source, &class, &severity, &vendor, &count,
		&e.CPU, &e.Socket, &e.Bank, &e.CacheLevel, &coreBank,
		&status, &addr, &misc, &synd, &ipid, &pa, &addrValid, &addrLSB,
		&e.MC, &e.DIMMLabel, &e.Layers[0], &e.Layers[1], &e.Layers[2], &e.Row, &e.Detail,
		&e.Channel, &e.LocatedBy, &e.ChipSelect)
	if err != nil {
		return e, err
	}
	if e.Class, err = fault.ParseClass(class); err != nil {
		return e, err
	}
	if e.Severity, err = fault.ParseSeverity(severity); err != nil {
		return e, err
	}
	if e.Vendor, err = parseVendor(vendor); err != nil {
		return e, err
	}
	e.Received, e.Recorded = fromUnixNano(received), fromUnixNano(recorded)
	e.Source = fault.Source(source)
	e.Count = uint32(count)
	e.CoreBank, e.AddrValid, e.AddrLSB = coreBank != 0, addrValid != 0, uint8(addrLSB)
	e.Status, e.Addr, e.Misc, e.Synd, e.IPID = unbits(status), unbits(addr), unbits(misc), unbits(synd), unbits(ipid)
	e.PhysAddr = unbits(pa)
	return e, nil
}

// PruneEvents deletes events received before the cutoff (retention) and
// says how many went. Cases keep their own copy of the evidence.
func (s *Store) PruneEvents(before time.Time) (int64, error) {
	var n int64
	err := s.write("pruning events", func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM events WHERE received < ?`, unixNano(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
