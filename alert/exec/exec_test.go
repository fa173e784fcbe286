package exec

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
)

func sample() alert.Alert {
	c := "5f0c8a52-7e1d-4d55-9a3c-0b8e2f6a9d41"
	return alert.Alert{
		ID: alert.StableID("db-7", c, alert.IsolationFailed), Case: c, Transition: alert.IsolationFailed,
		Severity: alert.SeverityCritical, Suspect: "cpu:3", FRU: "socket:0",
		Summary: "offline of cpu3 failed: EBUSY; it's \"busy\"", EvidenceCount: 5, Host: "db-7",
		Time: time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC),
	}
}

func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hook.sh")
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755))
	return path
}

func TestExecPassesEnvAndStdin(t *testing.T) {
	dir := t.TempDir()
	hook := script(t, `env | grep '^SELFPROTECT_' | sort > "$1/env"; cat > "$1/stdin"`)
	n, err := New(alert.ExecConfig{Command: []string{hook, dir}})
	require.NoError(t, err)
	retry, err := n.Notify(context.Background(), sample())
	require.NoError(t, err)
	require.False(t, retry)

	env, err := os.ReadFile(filepath.Join(dir, "env"))
	require.NoError(t, err)
	a := sample()
	for _, want := range []string{
		"SELFPROTECT_ALERT_ID=" + a.ID, "SELFPROTECT_CASE=" + a.Case, "SELFPROTECT_TRANSITION=isolation-failed",
		"SELFPROTECT_SEVERITY=critical", "SELFPROTECT_SUSPECT=cpu:3", "SELFPROTECT_FRU=socket:0",
		"SELFPROTECT_SUMMARY=" + a.Summary, "SELFPROTECT_EVIDENCE_COUNT=5", "SELFPROTECT_HOST=db-7",
		"SELFPROTECT_UNDO=", "SELFPROTECT_TIME=2026-03-14T09:26:53Z",
	} {
		require.Contains(t, strings.Split(string(env), "\n"), want)
	}
	stdin, err := os.ReadFile(filepath.Join(dir, "stdin"))
	require.NoError(t, err)
	var got alert.Alert
	require.NoError(t, json.Unmarshal(stdin, &got))
	require.Equal(t, a, got)
}

func TestExecFailures(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"non-zero exit with stderr", "echo 'relay said no' >&2; exit 3", "exit status 3: relay said no"},
		{"non-zero exit", "exit 1", "exit status 1"},
		{"killed by a signal", "kill -TERM $$", "signal: terminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := New(alert.ExecConfig{Command: []string{script(t, tc.body)}})
			require.NoError(t, err)
			retry, err := n.Notify(context.Background(), sample())
			require.ErrorContains(t, err, tc.want)
			require.True(t, retry)
		})
	}
}

// TestExecHangingHookIsKilled: the timeout kills the hook and what it
// started, and Notify returns instead of waiting on their pipes.
func TestExecHangingHookIsKilled(t *testing.T) {
	dir := t.TempDir()
	hook := script(t, `sleep 300 & echo $! > "$1/child.new"; mv "$1/child.new" "$1/child"; wait`)
	n, err := New(alert.ExecConfig{Command: []string{hook, dir}})
	require.NoError(t, err)
	ctx := expireOnFile(t, filepath.Join(dir, "child"))
	retry, err := n.Notify(ctx, sample())
	require.True(t, retry)
	require.ErrorContains(t, err, "killed: context deadline exceeded")

	pidText, err := os.ReadFile(filepath.Join(dir, "child"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	require.NoError(t, err)
	// The grandchild got SIGKILL with its group; reap-less, it may linger
	// as a zombie of init, so ask the kernel for its state.
	require.Eventually(t, func() bool {
		if err := syscall.Kill(pid, 0); err != nil {
			return true
		}
		st, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pidText)), "stat"))
		return err != nil || strings.Contains(string(st), ") Z ")
	}, 10*time.Second, 10*time.Millisecond, "the hook's child was not killed")
}

// fileDeadline is a context whose deadline passes once a file exists. A
// fixed 500 ms timeout killed the hook before a loaded machine had run it
// far enough to start its child (2 of 60 runs at a load average of 44).
type fileDeadline struct {
	context.Context
	done chan struct{}
}

func (c fileDeadline) Done() <-chan struct{} { return c.done }

func (c fileDeadline) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func expireOnFile(t *testing.T, path string) context.Context {
	t.Helper()
	ctx := fileDeadline{Context: context.Background(), done: make(chan struct{})}
	go func() {
		defer close(ctx.done)
		// The bound only keeps a hook that never gets there from hanging
		// the test; the assertions then fail.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			if _, err := os.Stat(path); err == nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return ctx
}

// A hook that cannot be found or started is named once, with the cause
// (each layer adds one context: no "exec: exec: ..." nor the path twice),
// and the cause stays matchable.
func TestExecHookErrorsNameTheHookOnce(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	require.NoError(t, os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644))
	for _, tc := range []struct {
		name, cmd, want string
		is              error
	}{
		{"absolute path missing", "/nonexistent/hook", "hook /nonexistent/hook: no such file or directory", fs.ErrNotExist},
		{"not on PATH", "selfprotect-no-such-hook", "hook selfprotect-no-such-hook: executable file not found in $PATH", osexec.ErrNotFound},
		{"not executable", notExec, "hook " + notExec + ": permission denied", fs.ErrPermission},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(alert.ExecConfig{Command: []string{tc.cmd}})
			require.EqualError(t, err, tc.want)
			require.ErrorIs(t, err, tc.is)
		})
	}
	_, err := New(alert.ExecConfig{})
	require.EqualError(t, err, "empty command")

	// Removed after start: the send fails, is retried, and says so once.
	hook := script(t, "exit 0")
	n, err := New(alert.ExecConfig{Command: []string{hook}})
	require.NoError(t, err)
	require.NoError(t, os.Remove(hook))
	retry, err := n.Notify(context.Background(), sample())
	require.True(t, retry)
	require.EqualError(t, err, "starting hook "+hook+": no such file or directory")
	require.ErrorIs(t, err, fs.ErrNotExist)
}
