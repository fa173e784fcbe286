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
