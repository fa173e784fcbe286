package replay

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/selfprotect/selfprotect/edac"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/mce"
)

// rasdaemon keeps one SQLite database per machine (ras-mc_event.db). Its
// tables, as of rasdaemon 0.8.x (ras-record.c):
//
//	mc_event(id, timestamp TEXT, err_count, err_type TEXT, err_msg, label,
//	         mc, top_layer, middle_layer, lower_layer, address, grain,
//	         syndrome, driver_detail)
//	mce_record(id, timestamp TEXT, mcgcap, mcgstatus, status, addr, misc,
//	         ip, tsc, walltime, ppin, cpu, cpuid, apicid, socketid, cs, bank,
//	         cpuvendor, microcode, bank_name, error_msg, ...)
//
// timestamp is local time as "2006-01-02 15:04:05 -0700"; err_type is
// Corrected, Uncorrected, Deferred, Fatal or Info; grain holds the
// tracepoint's grain_bits (the lowest valid address bit); 64-bit registers
// are stored as signed integers. ppin and microcode came later and are
// optional here (Debian 12's rasdaemon 0.6.8 has neither: see
// testdata/rasdaemon-real); mce_record has no IPID or SYND column, so AMD
// SMCA bank types cannot be decoded from it.
const rasdaemonTime = "2006-01-02 15:04:05 -0700"

// ReadRasdaemon reads a rasdaemon database as one host's raw records (both
// tables, one record per row), in time order; replay them with AddRaw so
// the count-once stage merges an error's mce_record and mc_event rows as
// the daemon would.
func ReadRasdaemon(path, host string) ([]Record, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("rasdaemon database: %w", err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(5000)")
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Opaque: (&url.URL{Path: path}).EscapedPath(), RawQuery: q.Encode()}).String())
	if err != nil {
		return nil, fmt.Errorf("opening rasdaemon database %s: %w", path, err)
	}
	defer db.Close()
	ctx := context.Background()
	tables, err := tableColumns(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("reading rasdaemon database %s: %w", path, err)
	}
	if tables["mc_event"] == nil && tables["mce_record"] == nil {
		return nil, fmt.Errorf("%s: no mc_event or mce_record table: not a rasdaemon database", path)
	}
	var recs []Record
	if cols := tables["mc_event"]; cols != nil {
		if recs, err = readMCEvents(ctx, db, path, host, cols); err != nil {
			return nil, err
		}
	}
	if cols := tables["mce_record"]; cols != nil {
		mces, err := readMCERecords(ctx, db, path, host, cols)
		if err != nil {
			return nil, err
		}
		recs = append(recs, mces...)
	}
	slices.SortStableFunc(recs, func(a, b Record) int { return a.Event.Received.Compare(b.Event.Received) })
	return recs, nil
}

func tableColumns(ctx context.Context, db *sql.DB) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	for _, t := range []string{"mc_event", "mce_record"} {
		rows, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, t)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return nil, err
			}
			if out[t] == nil {
				out[t] = map[string]bool{}
			}
			out[t][name] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// rowError names the table row a bad value came from.
func rowError(path, table string, id int64, field, format string, args ...any) error {
	return fmt.Errorf("%s: %s id %d: field %q: %s", path, table, id, field, fmt.Sprintf(format, args...))
}

func need(path, table string, cols map[string]bool, names ...string) error {
	var missing []string
	for _, n := range names {
		if !cols[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: table %s lacks column(s) %s: not the rasdaemon 0.8 schema", path, table, strings.Join(missing, ", "))
	}
	return nil
}

func readMCEvents(ctx context.Context, db *sql.DB, path, host string, cols map[string]bool) ([]Record, error) {
	if err := need(path, "mc_event", cols, "id", "timestamp", "err_count", "err_type", "label", "mc",
		"top_layer", "middle_layer", "lower_layer", "address", "grain"); err != nil {
		return nil, err
	}
	// err_msg says when amd64_edac could not place the error (its label is
	// then not the error's DIMM); a table without it reads as placed.
	msgCol := "''"
	if cols["err_msg"] {
		msgCol = "err_msg"
	}
	rows, err := db.QueryContext(ctx, `SELECT id, timestamp, err_count, err_type, label, mc,
		top_layer, middle_layer, lower_layer, address, grain, `+msgCol+` FROM mc_event ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("reading %s mc_event: %w", path, err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var (
			id, count, mc, top, mid, low, addr, grain sql.NullInt64
			ts, typ, label, msg                       sql.NullString
		)
		if err := rows.Scan(&id, &ts, &count, &typ, &label, &mc, &top, &mid, &low, &addr, &grain, &msg); err != nil {
			return nil, fmt.Errorf("reading %s mc_event: %w", path, err)
		}
		t, err := time.Parse(rasdaemonTime, ts.String)
		if err != nil {
			return nil, rowError(path, "mc_event", id.Int64, "timestamp", "want %q, got %q", rasdaemonTime, ts.String)
		}
		ev := fault.NewEvent(fault.SourceTraceMC, t)
		ev.Recorded, ev.Class = t, fault.ClassMemory
		switch typ.String {
		case "Corrected":
			ev.Severity = fault.SeverityCorrected
		case "Deferred":
			ev.Severity = fault.SeverityDeferred
		case "Uncorrected":
			ev.Severity = fault.SeverityUncorrectedRecoverable
		case "Fatal":
			ev.Severity = fault.SeverityFatal
		case "Info":
			continue // not an error
		default:
			return nil, rowError(path, "mc_event", id.Int64, "err_type", "want Corrected, Uncorrected, Deferred, Fatal or Info, got %q", typ.String)
		}
		if count.Int64 > 1 && count.Int64 <= 1<<32-1 {
			ev.Count = uint32(count.Int64)
		}
		// EDAC reports address 0 when the driver could not tell it.
		if addr.Int64 != 0 {
			ev.PhysAddr, ev.AddrValid = uint64(addr.Int64), true
			ev.AddrLSB = uint8(min(max(grain.Int64, 0), 63))
		}
		if mc.Valid && mc.Int64 >= 0 {
			ev.MC = int(mc.Int64)
		}
		if l := strings.TrimSpace(label.String); l != "" && !strings.Contains(l, "unknown") {
			ev.DIMMLabel = l
			if ev.MC == fault.Unknown {
				ev.MC = 0
			}
		}
		for i, v := range []sql.NullInt64{top, mid, low} {
			if v.Valid && v.Int64 >= 0 && v.Int64 < 255 {
				ev.Layers[i] = int(v.Int64)
			}
		}
		if edac.Unplaced(msg.String) {
			ev.LocatedBy = fault.LocatedByUnplaced
		}
		out = append(out, Record{Line: int(id.Int64), Host: host, Event: ev})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading %s mc_event: %w", path, err)
	}
	return out, nil
}

func readMCERecords(ctx context.Context, db *sql.DB, path, host string, cols map[string]bool) ([]Record, error) {
	if err := need(path, "mce_record", cols, "id", "timestamp", "mcgcap", "mcgstatus", "status", "addr", "misc",
		"walltime", "cpu", "cpuid", "socketid", "bank", "cpuvendor"); err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT id, timestamp, mcgcap, mcgstatus, status, addr, misc,
		walltime, cpu, cpuid, socketid, bank, cpuvendor FROM mce_record ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("reading %s mce_record: %w", path, err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var (
			id, mcgcap, mcgstatus, status, addr, misc, walltime sql.NullInt64
			cpu, cpuid, socket, bank, vendor                    sql.NullInt64
			ts                                                  sql.NullString
		)
		if err := rows.Scan(&id, &ts, &mcgcap, &mcgstatus, &status, &addr, &misc, &walltime, &cpu, &cpuid, &socket, &bank, &vendor); err != nil {
			return nil, fmt.Errorf("reading %s mce_record: %w", path, err)
		}
		t, err := time.Parse(rasdaemonTime, ts.String)
		if err != nil {
			return nil, rowError(path, "mce_record", id.Int64, "timestamp", "want %q, got %q", rasdaemonTime, ts.String)
		}
		if bank.Int64 < 0 || bank.Int64 > 255 || vendor.Int64 < 0 || vendor.Int64 > 255 {
			return nil, rowError(path, "mce_record", id.Int64, "bank", "bank %d or cpuvendor %d out of range", bank.Int64, vendor.Int64)
		}
		r := mce.Record{
			MCGCap: uint64(mcgcap.Int64), MCGStatus: uint64(mcgstatus.Int64), Status: uint64(status.Int64),
			Addr: uint64(addr.Int64), Misc: uint64(misc.Int64), Walltime: uint64(walltime.Int64),
			CPU: uint32(cpu.Int64), CPUID: uint32(cpuid.Int64), SocketID: uint32(socket.Int64),
			Bank: uint8(bank.Int64), CPUVendor: uint8(vendor.Int64),
		}
		ev := mce.ToEvent(r, mce.Decode(r), t, fault.SourceTraceMCE)
		ev.Received, ev.Recorded = t, t
		out = append(out, Record{Line: int(id.Int64), Host: host, Event: ev})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading %s mce_record: %w", path, err)
	}
	return out, nil
}

var errNoHost = errors.New("no host name")

// HostFromPath names the host of a per-machine database after its file
// when no name is given.
func HostFromPath(path, host string) (string, error) {
	if host != "" {
		return host, nil
	}
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	if base == "" || base == "." || base == "/" {
		return "", fmt.Errorf("%s: %w", path, errNoHost)
	}
	return base, nil
}
