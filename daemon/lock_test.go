package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStateLockIsExclusive(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(t.TempDir(), "s.sock")
	first, err := lockState(dir, sock)
	require.NoError(t, err)
	_, err = lockState(dir, sock)
	require.ErrorIs(t, err, ErrAlreadyRunning)
	require.ErrorContains(t, err, "locked by pid")
	first.release()
	again, err := lockState(dir, sock)
	require.NoError(t, err, "a released lock can be taken again")
	again.release()
}

func TestControlRoundTripAndPermissions(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "s.sock")
	ln, err := listenControl(sock)
	require.NoError(t, err)
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "root-only socket")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serveControl(ctx, ln, func(r Request) Response {
		if r.Command == "status" {
			return Response{OK: true, Status: &Status{Armed: true}}
		}
		return Response{Error: "unknown command " + r.Command}
	})
	resp, err := Call(sock, Request{Command: "status"}, time.Second)
	require.NoError(t, err)
	require.True(t, resp.Status.Armed)
	_, err = Call(sock, Request{Command: "bogus"}, time.Second)
	require.ErrorContains(t, err, "unknown command bogus")

	// A socket path nobody listens on is a clear error, not a hang.
	_, err = Call(filepath.Join(t.TempDir(), "none"), Request{Command: "status"}, time.Second)
	require.ErrorContains(t, err, "no daemon answers")
}

func TestStateLockHardening(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	require.NoError(t, os.Mkdir(dir, 0o755))
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := lockState(dir, sock)
	require.NoError(t, err)
	l.release()
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "a looser state directory is tightened")

	// A lock planted as a symlink is refused, and its target untouched.
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep me"), 0o644))
	dir2 := t.TempDir()
	require.NoError(t, os.Symlink(victim, filepath.Join(dir2, "lock")))
	_, err = lockState(dir2, sock)
	require.ErrorContains(t, err, "symbolic link")
	data, err := os.ReadFile(victim)
	require.NoError(t, err)
	require.Equal(t, "keep me", string(data))
}
