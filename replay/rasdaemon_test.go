package replay

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// rasdaemonSchema is the table layout rasdaemon 0.8.x creates
// (ras-record.c: mc_event_fields, mce_record_fields).
const rasdaemonSchema = `
CREATE TABLE mc_event (id INTEGER PRIMARY KEY, timestamp TEXT, err_count INTEGER, err_type TEXT,
  err_msg TEXT, label TEXT, mc INTEGER, top_layer INTEGER, middle_layer INTEGER, lower_layer INTEGER,
  address INTEGER, grain INTEGER, syndrome INTEGER, driver_detail TEXT);
CREATE TABLE mce_record (id INTEGER PRIMARY KEY, timestamp TEXT, mcgcap INTEGER, mcgstatus INTEGER,
  status INTEGER, addr INTEGER, misc INTEGER, ip INTEGER, tsc INTEGER, walltime INTEGER, ppin INTEGER,
  cpu INTEGER, cpuid INTEGER, apicid INTEGER, socketid INTEGER, cs INTEGER, bank INTEGER,
  cpuvendor INTEGER, microcode INTEGER, bank_name TEXT, error_msg TEXT, mcgstatus_msg TEXT,
  mcistatus_msg TEXT, mcastatus_msg TEXT, user_action TEXT, mc_location TEXT);`

// Intel register values: a corrected memory-controller error (MCACOD
// 0x0090, bank 7, MISC 0x8c: physical address mode, LSB 12) as the QEMU
// lab injects it, and a corrected L1 data read (MCACOD 0x0115) in the DCU
// (bank 1, core-private). MCG_CAP has SER_P (bit 24).
const (
	intelMemCE     = int64(-0x63ffffffffffff70) // 0x9c00000000000090 as SQLite's signed integer
	intelL1CE      = int64(-0x6ffffffffffffeeb) // 0x9000000000000115
	intelMCGCap    = 0x1000c0a
	x86VendorIntel = 0
)

func writeRasdaemonDB(t *testing.T, withMCEvent bool) string {
	t.Helper()
	mem, l1 := intelMemCE, intelL1CE
	require.Equal(t, uint64(0x9c00000000000090), uint64(mem))
	require.Equal(t, uint64(0x9000000000000115), uint64(l1))
	path := filepath.Join(t.TempDir(), "ras-mc_event.db")
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(rasdaemonSchema)
	require.NoError(t, err)
	mc := `INSERT INTO mc_event (timestamp, err_count, err_type, err_msg, label, mc, top_layer, middle_layer, lower_layer,
	  address, grain, syndrome, driver_detail) VALUES (?, ?, ?, '', ?, 0, 0, 1, -1, ?, ?, 0, '')`
	mceRow := `INSERT INTO mce_record (timestamp, mcgcap, mcgstatus, status, addr, misc, ip, tsc, walltime, ppin,
	  cpu, cpuid, apicid, socketid, cs, bank, cpuvendor, microcode) VALUES (?, ?, 0, ?, ?, ?, 0, 0, 0, 0, ?, 0x50654, 0, 0, 0, ?, ?, 0)`
	if withMCEvent {
		for _, row := range [][]any{
			{"2026-05-01 10:00:00 +0200", 1, "Corrected", "DIMM_A1", 0x2d94040, 6},
			{"2026-05-01 11:00:00 +0200", 1, "Corrected", "DIMM_A1", 0x2d94080, 6},
			{"2026-05-01 11:30:00 +0200", 1, "Info", "DIMM_A1", 0x2d94080, 6},
			{"2026-05-03 09:00:00 +0200", 1, "Uncorrected", "DIMM_A1", 0x5000000, 6},
		} {
			_, err := db.Exec(mc, row...)
			require.NoError(t, err)
		}
	}
	// The same two corrected memory errors as MCEs (dropped when mc_event
	// has them), then five L1 errors on CPU 2.
	for _, row := range [][]any{
		{"2026-05-01 10:00:00 +0200", intelMCGCap, intelMemCE, 0x2d94040, 0x8c, 0, 7, x86VendorIntel},
		{"2026-05-01 11:00:00 +0200", intelMCGCap, intelMemCE, 0x2d94080, 0x8c, 0, 7, x86VendorIntel},
		{"2026-05-02 08:00:00 +0000", intelMCGCap, intelL1CE, 0, 0, 2, 1, x86VendorIntel},
		{"2026-05-02 08:01:00 +0000", intelMCGCap, intelL1CE, 0, 0, 2, 1, x86VendorIntel},
		{"2026-05-02 08:02:00 +0000", intelMCGCap, intelL1CE, 0, 0, 2, 1, x86VendorIntel},
		{"2026-05-02 08:03:00 +0000", intelMCGCap, intelL1CE, 0, 0, 2, 1, x86VendorIntel},
		{"2026-05-02 08:04:00 +0000", intelMCGCap, intelL1CE, 0, 0, 2, 1, x86VendorIntel},
	} {
		_, err := db.Exec(mceRow, row...)
		require.NoError(t, err)
	}
	return path
}

// TestRasdaemonImport replays a database laid out as rasdaemon 0.8 writes
// it (built here from its schema; not yet one the real rasdaemon wrote).
//
// With mc_event rows: the database holds each corrected memory error twice
// (mc_event and mce_record rows, same second, same page); the count-once
// stage counts each once, so our policy sees 8 errors (2 CEs, the UE, 5 L1
// errors) out of 10 records: the page rule trips on page 0x2d94, the UE on
// page 0x5000 (DIMM_A1) is not protected, and the five L1 errors on CPU 2
// offline it with its sibling 34 (64 CPUs, 2 threads per core). The anchors
// read their own view raw: rasdaemon the 3 mc_events (50/24h: no case),
// mcelog the 2 memory MCEs (2/24h: the page). The Info row is skipped.
// Without mc_event rows the memory errors come from mce_record alone: the
// same page and CPU, no UE.
func TestRasdaemonImport(t *testing.T) {
	for _, tt := range []struct {
		name                      string
		withEDAC                  bool
		records, seen             uint64
		cases                     map[string]int
		uePages, dimmsWithUE      int
		rasdaemonSeen, mcelogSeen uint64
	}{
		{"mc_event and mce_record", true, 10, 8, map[string]int{"page": 1, "cpu": 1, "uncorrected": 1}, 1, 1, 3, 2},
		{"mce_record only", false, 7, 7, map[string]int{"page": 1, "cpu": 1}, 0, 0, 0, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeRasdaemonDB(t, tt.withEDAC)
			recs, err := ReadRasdaemon(path, "db1")
			require.NoError(t, err)
			r, err := New(defaultHost, builtin(t, "selfprotect", "rasdaemon", "mcelog")...)
			require.NoError(t, err)
			require.NoError(t, r.AddRaw(path, recs))
			rep := r.Report()
			p := rep.Policies[0]
			require.Equal(t, tt.records, rep.Events)
			require.Equal(t, tt.seen, p.EventsSeen)
			require.Equal(t, tt.rasdaemonSeen, rep.Policies[1].EventsSeen)
			require.Empty(t, rep.Policies[1].Cases)
			require.Equal(t, tt.mcelogSeen, rep.Policies[2].EventsSeen)
			require.Equal(t, map[string]int{"page": 1}, rep.Policies[2].Cases)
			require.Equal(t, tt.cases, p.Cases)
			require.EqualValues(t, 1, p.PagesRetired)
			require.EqualValues(t, 2, p.CPUsOffline)
			require.Equal(t, tt.uePages, p.UEPages)
			require.Equal(t, tt.dimmsWithUE, p.DIMMsWithUE)
			require.Equal(t, 0, p.ProtectedByPage)
		})
	}
}

func TestRasdaemonBadDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE mc_event (id INTEGER PRIMARY KEY, timestamp TEXT)`)
	require.NoError(t, err)
	db.Close()
	_, err = ReadRasdaemon(path, "x")
	require.ErrorContains(t, err, "table mc_event lacks column(s) err_count, err_type")

	path = writeRasdaemonDB(t, true)
	db, err = sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec(`UPDATE mc_event SET timestamp = 'yesterday' WHERE id = 2`)
	require.NoError(t, err)
	db.Close()
	_, err = ReadRasdaemon(path, "x")
	require.ErrorContains(t, err, `mc_event id 2: field "timestamp": want "2006-01-02 15:04:05 -0700", got "yesterday"`)

	_, err = ReadRasdaemon(filepath.Join(t.TempDir(), "missing.db"), "x")
	require.ErrorContains(t, err, "missing.db")
}

// An mc_event row whose err_msg is amd64_edac's for an error it could not
// place reads as unplaced, so its label (csrow 0's) blames no DIMM.
func TestRasdaemonUnplacedMCEvent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ras-mc_event.db")
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec(rasdaemonSchema)
	require.NoError(t, err)
	for _, msg := range []string{"MCA_SYND not valid - unknown syndrome and csrow", "memory read error"} {
		_, err = db.Exec(`INSERT INTO mc_event (timestamp, err_count, err_type, err_msg, label, mc, top_layer, middle_layer,
		  lower_layer, address, grain, syndrome, driver_detail) VALUES ('2026-05-01 10:00:00 +0200', 1, 'Corrected', ?,
		  'mc#0csrow#0channel#0', 0, 0, 0, -1, 0, 0, 0, '')`, msg)
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())
	recs, err := ReadRasdaemon(path, "db1")
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, fault.LocatedByUnplaced, recs[0].Event.LocatedBy)
	require.Empty(t, recs[1].Event.LocatedBy)
	require.Equal(t, "mc#0csrow#0channel#0", recs[0].Event.DIMMLabel, "the label stays as the kernel gave it; count-once drops it")
}
