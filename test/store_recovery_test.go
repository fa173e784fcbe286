package test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A damaged store must not stop the daemon (under Restart=on-failure it
// would crash-loop and leave the host unprotected): it is moved aside, the
// daemon says so loudly and keeps isolating with a fresh history.
func TestCorruptStoreMovedAsideAndProtectionContinues(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	state := filepath.Join(t.TempDir(), "state")
	require.NoError(t, os.MkdirAll(state, 0o700))
	db := filepath.Join(state, "selfprotect.db")
	garbage := []byte("SQLite format 2\x00 but not really: a disk error ate this page")
	require.NoError(t, os.WriteFile(db, garbage, 0o600))

	d := startDaemon(t, m, daemonOpts{state: state})
	moved, err := filepath.Glob(db + ".corrupt-*")
	require.NoError(t, err)
	require.Len(t, moved, 1, "the damaged file is kept beside the new one")
	kept, err := os.ReadFile(moved[0])
	require.NoError(t, err)
	require.Equal(t, garbage, kept)
	require.Contains(t, d.log.String(), "the store was corrupt")

	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	d.settle(300 * time.Millisecond)
	require.Len(t, m.Offlined(), 1, "the daemon still isolates")
	cases := d.faulty()
	require.Len(t, cases, 1, "and records it in the fresh store")

	st, err := os.Stat(db)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	st, err = os.Stat(state)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
}
