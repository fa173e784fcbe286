package store

import (
	"bufio"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func TestOpenCreatesSchemaAndWAL(t *testing.T) {
	s, _ := openTemp(t)
	var mode string
	require.NoError(t, s.w.QueryRow(`PRAGMA journal_mode`).Scan(&mode))
	require.Equal(t, "wal", mode)
	var fk, sync int
	require.NoError(t, s.w.QueryRow(`PRAGMA foreign_keys`).Scan(&fk))
	require.NoError(t, s.w.QueryRow(`PRAGMA synchronous`).Scan(&sync))
	require.Equal(t, 1, fk)
	require.Equal(t, 1, sync, "synchronous=NORMAL")
	v, err := version(s.w)
	require.NoError(t, err)
	require.Equal(t, SchemaVersion(), v)
}

func TestReopenKeepsData(t *testing.T) {
	s, path := openTemp(t)
	c := newCase("3f2a9c1e-0000-4000-8000-000000000001", at(0), fault.Page(0x2d94))
	require.NoError(t, s.SaveCase(c))
	require.NoError(t, s.AddAction(fault.Action{CaseID: c.ID, Time: at(1), Resource: c.Suspect,
		Kind: "soft-offline", Outcome: fault.OutcomeIsolated, Attempts: 1}))
	require.NoError(t, s.AddEvents([]fault.Event{memoryEvent(at(0), 0x2d94000)}))
	require.NoError(t, s.Close())

	// A reboot: a new process opens the same file and migrates nothing.
	s2, err := Open(path)
	require.NoError(t, err)
	defer s2.Close()
	got, err := s2.Case(c.ID)
	require.NoError(t, err)
	require.Equal(t, c, got)
	iso, err := s2.Isolated()
	require.NoError(t, err)
	require.Equal(t, []Isolation{{Resource: c.Suspect, CaseID: c.ID, Kind: "soft-offline", At: at(1), ByUs: true}}, iso)
	evs, err := s2.Events(EventQuery{})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	var versions int
	require.NoError(t, s2.w.QueryRow(`SELECT count(*) FROM migrations`).Scan(&versions))
	require.Equal(t, SchemaVersion(), versions)
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name     string
		content  []byte
		readOnly bool
		wantIs   error
		wantText string
	}{
		{name: "garbage", content: []byte(strings.Repeat("not a database, just text\n", 200)), wantIs: ErrCorrupt},
		{name: "garbage read-only", content: []byte(strings.Repeat("xyz", 2000)), readOnly: true, wantIs: ErrCorrupt},
		{name: "sqlite header then garbage", content: append([]byte("SQLite format 3\x00"), make([]byte, 4096)...), wantIs: ErrCorrupt},
		{name: "missing read-only", readOnly: true, wantIs: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if tt.content != nil {
				require.NoError(t, os.WriteFile(path, tt.content, 0o600))
			}
			open := Open
			if tt.readOnly {
				open = OpenReadOnly
			}
			s, err := open(path)
			require.Error(t, err)
			require.Nil(t, s)
			require.ErrorIs(t, err, tt.wantIs)
			require.Contains(t, err.Error(), path, "the error must name the file")
		})
	}
}

func TestReadOnlyOnForeignDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE t(x)`)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	_, err = OpenReadOnly(path)
	require.ErrorContains(t, err, "not a selfprotect store")
	require.ErrorContains(t, err, path)
}

func TestSchemaTooNew(t *testing.T) {
	s, path := openTemp(t)
	_, err := s.w.Exec(`INSERT INTO migrations(version, applied) VALUES (?, 0)`, SchemaVersion()+1)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	for name, open := range map[string]func(string) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
		_, err := open(path)
		require.ErrorIs(t, err, ErrSchemaTooNew, name)
	}
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	s, path := openTemp(t)
	require.NoError(t, s.SaveCase(newCase("aaaaaaaa-1", at(0), fault.CPU(3))))
	require.NoError(t, s.Close())

	// The daemon is down and closed cleanly: no -wal or -shm is left, and
	// a reader must still open the file.
	ro, err := OpenReadOnly(path)
	require.NoError(t, err)
	defer ro.Close()
	cases, err := ro.Cases(CaseFilter{})
	require.NoError(t, err)
	require.Len(t, cases, 1)

	writes := map[string]error{
		"AddEvents":       ro.AddEvents([]fault.Event{cacheEvent(at(0), 1)}),
		"SaveCase":        ro.SaveCase(newCase("bbbbbbbb-1", at(0), fault.CPU(4))),
		"UpdateCaseState": ro.UpdateCaseState("aaaaaaaa-1", fault.CaseRepaired, at(1), ""),
		"AddAction":       ro.AddAction(fault.Action{CaseID: "aaaaaaaa-1", Outcome: fault.OutcomeFailed}),
	}
	_, pruneErr := ro.PruneEvents(at(0))
	writes["PruneEvents"] = pruneErr
	for name, err := range writes {
		require.ErrorIs(t, err, ErrReadOnly, name)
	}
}

// TestHelperWriter is not a test: TestReadOnlyWhileAnotherProcessWrites runs
// the test binary again with this function as the "daemon".
func TestHelperWriter(t *testing.T) {
	path := os.Getenv("STORE_HELPER_DB")
	if path == "" {
		t.Skip("helper process only")
	}
	s, err := Open(path)
	require.NoError(t, err)
	require.NoError(t, s.AddEvents([]fault.Event{cacheEvent(at(0), 1), cacheEvent(at(1), 2)}))
	// Hold the write lock with an uncommitted event, as the daemon does in
	// the middle of a batch.
	tx, err := s.w.Begin()
	require.NoError(t, err)
	_, err = tx.Exec(insertEvent, 0, 0, "sim", "cache", "corrected", "amd", 1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "", 0, 0, 0, "", "uncommitted", -1, "", -1)
	require.NoError(t, err)
	os.Stdout.WriteString("ready\n")
	// Parent closes our stdin when it has read.
	bufio.NewReader(os.Stdin).ReadString('\n')
	tx.Rollback()
	s.Close()
}

func TestReadOnlyWhileAnotherProcessWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "selfprotect.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$")
	cmd.Env = append(os.Environ(), "STORE_HELPER_DB="+path)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer cmd.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)

	ro, err := OpenReadOnly(path)
	require.NoError(t, err)
	defer ro.Close()
	evs, err := ro.Events(EventQuery{})
	require.NoError(t, err)
	require.Len(t, evs, 2, "the reader sees what was committed, not the open batch")
	require.Equal(t, 1, evs[0].CPU)
	require.Equal(t, 2, evs[1].CPU)

	// The reader's connections are read-only at the SQLite level too, so a
	// CLI bug cannot become a second writer.
	_, err = ro.r.Exec(`DELETE FROM events`)
	require.ErrorContains(t, err, "readonly")
}
