package main

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestErrnoName(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{unix.EPERM, "EPERM"},
		{fmt.Errorf("open /usr/lib/modules: %w", unix.EACCES), "EACCES"},
		{&os.PathError{Op: "mkdir", Path: "/sys/fs/cgroup/x", Err: unix.EROFS}, "EROFS"},
		{errors.New("the probe's thread did not return in 10 s"), "the probe's thread did not return in 10 s"},
	} {
		require.Equal(t, c.want, errnoName(c.err), "%v", c.err)
	}
}

// What a probe changes stays on its thread, and the thread is gone after
// it: a personality or a namespace must not leak onto a thread the
// runtime hands to other work.
func TestThrowawayThreadExits(t *testing.T) {
	var tid int
	require.NoError(t, onThrowawayThread(func() error {
		tid = unix.Gettid()
		return unix.Prctl(unix.PR_SET_TIMERSLACK, 12345, 0, 0, 0)
	}))
	require.NotEqual(t, unix.Gettid(), tid, "the probe ran on a thread of its own")
	if tid != os.Getpid() {
		// The main thread cannot exit without the process: the runtime
		// parks it for good instead, which keeps it from other work too.
		task := fmt.Sprintf("/proc/self/task/%d", tid)
		require.Eventually(t, func() bool {
			_, err := os.Stat(task)
			return errors.Is(err, os.ErrNotExist)
		}, 5*time.Second, 10*time.Millisecond, "thread %d still exists", tid)
	}

	require.Equal(t, unix.EPERM, onThrowawayThread(func() error { return unix.EPERM }), "fn's error is returned as is")
}
