package main

import (
	"bytes"
	"debug/elf"
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

// The i386 probe is a valid executable whose one segment holds its entry,
// and as an unconfined process its non-native call goes through.
func TestI386Syscall(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(i386GetpidELF()))
	require.NoError(t, err)
	require.Equal(t, elf.EM_X86_64, f.Machine)
	require.Len(t, f.Progs, 1)
	seg := f.Progs[0]
	require.Equal(t, elf.PT_LOAD, seg.Type)
	require.True(t, f.Entry >= seg.Vaddr && f.Entry+uint64(len(i386GetpidCode)) == seg.Vaddr+seg.Filesz, "entry %#x, segment %+v", f.Entry, seg.ProgHeader)
	require.Equal(t, "ok", errnoName(i386Syscall()))
}
