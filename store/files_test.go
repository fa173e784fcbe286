package store

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStoreFilesAreRootOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	// A store left 0644 by an older version is tightened, WAL files too.
	require.NoError(t, os.WriteFile(path, nil, 0o644))
	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.write("touch", func(tx *sql.Tx) error { _, err := tx.Exec("CREATE TABLE t(x)"); return err }))
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		require.NoError(t, err, p)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), p)
	}
}

func TestStoreRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	require.NoError(t, os.WriteFile(target, []byte("precious"), 0o644))
	for _, link := range []string{"state.db", "state.db-wal"} {
		t.Run(link, func(t *testing.T) {
			sub := t.TempDir()
			path := filepath.Join(sub, "state.db")
			require.NoError(t, os.Symlink(target, filepath.Join(sub, link)))
			_, err := Open(path)
			require.ErrorContains(t, err, "symbolic link")
			data, err := os.ReadFile(target)
			require.NoError(t, err)
			require.Equal(t, "precious", string(data), "the link's target is untouched")
		})
	}
}

func TestOpenRecovering(t *testing.T) {
	now := time.Date(2026, 12, 1, 23, 59, 58, 0, time.UTC)
	t.Run("corrupt file moved aside", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "state.db")
		garbage := []byte("this is not a SQLite database, it is a shopping list: eggs, milk, DIMMs")
		require.NoError(t, os.WriteFile(path, garbage, 0o600))
		s, rec, err := OpenRecovering(path, now)
		require.NoError(t, err)
		defer s.Close()
		require.NotNil(t, rec)
		require.Equal(t, path+".corrupt-20261201T235958Z", rec.MovedTo)
		require.ErrorIs(t, rec.Cause, ErrCorrupt)
		kept, err := os.ReadFile(rec.MovedTo)
		require.NoError(t, err)
		require.Equal(t, garbage, kept, "the damaged file is kept for a post-mortem")
		_, err = s.Cases(CaseFilter{})
		require.NoError(t, err, "the fresh store works")
	})
	t.Run("empty file is reported", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "state.db")
		require.NoError(t, os.WriteFile(path, nil, 0o600))
		s, rec, err := OpenRecovering(path, now)
		require.NoError(t, err)
		defer s.Close()
		require.NotNil(t, rec)
		require.True(t, rec.WasEmpty)
		require.Empty(t, rec.MovedTo)
	})
	t.Run("healthy and new stores need nothing", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "state.db")
		s, rec, err := OpenRecovering(path, now)
		require.NoError(t, err)
		require.Nil(t, rec, "a missing file is a first start, not a loss")
		require.NoError(t, s.Close())
		s, rec, err = OpenRecovering(path, now)
		require.NoError(t, err)
		require.Nil(t, rec)
		require.NoError(t, s.Close())
	})
	t.Run("other errors are not cured by moving the file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "missing-dir", "state.db")
		_, _, err := OpenRecovering(path, now)
		require.Error(t, err)
		require.NotErrorIs(t, err, ErrCorrupt)
	})
}
