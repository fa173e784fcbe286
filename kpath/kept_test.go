package kpath_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/kpath"
)

// A kept procfs descriptor reads what the kernel has now, not what it
// had at the first read: /proc/uptime moves between two reads.
func TestKeptProcFileReadsFreshContent(t *testing.T) {
	k := kpath.Keep(kpath.OS{}, "/proc/uptime")
	defer k.Close()
	first, err := k.ReadFile()
	require.NoError(t, err)
	deadline := time.Now().Add(2 * time.Second)
	for {
		again, err := k.ReadFile()
		require.NoError(t, err)
		require.Len(t, strings.Fields(string(again)), 2, "the whole file each time: %q", again)
		if string(again) != string(first) {
			return
		}
		require.True(t, time.Now().Before(deadline), "/proc/uptime read through a kept descriptor never changed: %q", again)
		time.Sleep(20 * time.Millisecond)
	}
}

// A procfs file longer than the first read buffer comes back whole, and a
// read at an offset works as FS.ReadAt does.
func TestKeptProcFileLongAndAt(t *testing.T) {
	want, err := kpath.OS{}.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	k := kpath.Keep(kpath.OS{}, "/proc/self/maps")
	defer k.Close()
	got, err := k.ReadFile()
	require.NoError(t, err)
	// Our own mappings can change between the two reads; their first line
	// (the binary's text) does not.
	require.Equal(t, strings.SplitN(string(want), "\n", 2)[0], strings.SplitN(string(got), "\n", 2)[0])
	require.Greater(t, len(got), 100)

	k2 := kpath.Keep(kpath.OS{}, "/proc/uptime")
	defer k2.Close()
	b := make([]byte, 2)
	n, err := k2.ReadAt(b, 1)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = k2.ReadAt(make([]byte, 64), 0)
	require.ErrorIs(t, err, io.EOF, "a short read at the end says EOF, as os.File.ReadAt")
	require.Positive(t, n)
}

// A regular file is opened at each read: the simulator replaces its
// files by rename, and a kept descriptor would read the old one.
func TestKeptRegularFileFollowsRename(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "meminfo")
	require.NoError(t, os.WriteFile(p, []byte("old\n"), 0o644))
	k := kpath.Keep(kpath.OS{}, p)
	defer k.Close()
	b, err := k.ReadFile()
	require.NoError(t, err)
	require.Equal(t, "old\n", string(b))
	tmp := p + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte("new\n"), 0o644))
	require.NoError(t, os.Rename(tmp, p))
	b, err = k.ReadFile()
	require.NoError(t, err)
	require.Equal(t, "new\n", string(b))
}

// A missing file is an fs.ErrNotExist (callers tell an old kernel by it),
// and the file is looked for again at the next read.
func TestKeptMissingFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "absent")
	k := kpath.Keep(kpath.OS{}, p)
	_, err := k.ReadFile()
	require.True(t, errors.Is(err, fs.ErrNotExist), "%v", err)
	require.NoError(t, os.WriteFile(p, []byte("1\n"), 0o644))
	b, err := k.ReadFile()
	require.NoError(t, err)
	require.Equal(t, "1\n", string(b))
}

// An FS that cannot keep descriptors (the package tests' fakes) is read
// through its own calls every time.
type countingFS struct {
	kpath.FS // only ReadFile is called
	reads    int
}

func (c *countingFS) ReadFile(name string) ([]byte, error) { c.reads++; return []byte("x"), nil }

func TestKeptFallsBackToTheFS(t *testing.T) {
	c := &countingFS{}
	_, keeps := any(c).(kpath.KeepOpener)
	require.False(t, keeps)
	k := kpath.Keep(c, "/proc/uptime")
	for range 3 {
		b, err := k.ReadFile()
		require.NoError(t, err)
		require.Equal(t, "x", string(b))
	}
	require.Equal(t, 3, c.reads)
}
