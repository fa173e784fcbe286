package kpath_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	kpath.FS // only ReadFile and WriteFile are called
	reads    int
	writes   []string
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
	w := kpath.KeepForWrite(c, "/sys/x")
	require.NoError(t, w.WriteFile([]byte("1\n")))
	require.NoError(t, w.WriteFile([]byte("2\n")))
	require.Equal(t, []string{"/sys/x=1\n", "/sys/x=2\n"}, c.writes)
}

func (c *countingFS) WriteFile(name string, data []byte) error {
	c.writes = append(c.writes, name+"="+string(data))
	return nil
}

// A sysfs attribute is kept, for reading and for writing (the kernel suite
// writes the offline files through kept descriptors); a regular file is
// not, either way.
func TestOpenKeptKeepsSysfs(t *testing.T) {
	f, err := kpath.OS{}.OpenKept("/sys/devices/system/cpu/online", false)
	require.NoError(t, err)
	b := make([]byte, 64)
	n, err := f.ReadAt(b, 0)
	require.ErrorIs(t, err, io.EOF)
	require.Regexp(t, `^0`, string(b[:n]), "CPU 0 is online")
	require.NoError(t, f.Close())

	p := filepath.Join(t.TempDir(), "online")
	require.NoError(t, os.WriteFile(p, []byte("1\n"), 0o644))
	for _, write := range []bool{false, true} {
		_, err := kpath.OS{}.OpenKept(p, write)
		require.ErrorIs(t, err, kpath.ErrNotKeepable, "write=%v", write)
	}
}

// A FIFO (the simulator's offline files) is refused without being opened:
// opening one for writing with no reader would wait forever.
func TestOpenKeptFIFONeverBlocks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "soft_offline_page")
	require.NoError(t, syscall.Mkfifo(p, 0o600))
	done := make(chan error, 1)
	go func() {
		_, err := kpath.OS{}.OpenKept(p, true)
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, kpath.ErrNotKeepable)
	case <-time.After(10 * time.Second):
		t.Fatal("OpenKept of a FIFO with no reader did not return")
	}
	_, err := kpath.OS{}.OpenKept(filepath.Join(t.TempDir(), "absent"), false)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// keepingFS keeps descriptors over fixed contents and counts the reads and
// writes they get.
type keepingFS struct {
	kpath.FS
	content        string
	reads, opens   int
	writes         []string
	failNextWrites int
}

func (k *keepingFS) OpenKept(name string, write bool) (kpath.KeptFile, error) {
	k.opens++
	return keptFile{k}, nil
}

type keptFile struct{ k *keepingFS }

// ReadAt fills b in ReadOnce calls, as the real descriptor's preadFull.
func (f keptFile) ReadAt(b []byte, off int64) (int, error) {
	done := 0
	for done < len(b) {
		n, err := f.ReadOnce(b[done:], off+int64(done))
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// ReadOnce is one read(2): what there is, then 0 and EOF.
func (f keptFile) ReadOnce(b []byte, off int64) (int, error) {
	f.k.reads++
	n, err := strings.NewReader(f.k.content).ReadAt(b, off)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func (f keptFile) WriteAt(b []byte, off int64) (int, error) {
	if f.k.failNextWrites > 0 {
		f.k.failNextWrites--
		return 0, &fs.PathError{Op: "write", Path: "x", Err: syscall.EBUSY}
	}
	f.k.writes = append(f.k.writes, fmt.Sprintf("%d:%s", off, b))
	return len(b), nil
}

func (keptFile) Close() error { return nil }

// A file the kernel hands out whole costs one read when it fits the
// buffer; a file made record by record is read until a read finds its
// end; either comes back whole when it is longer than the first buffer.
func TestKeptWholeReadsOnce(t *testing.T) {
	long := strings.Repeat("HardwareCorrupted:     0 kB\n", 400) // > 4096
	for _, tc := range []struct {
		name      string
		whole     bool
		content   string
		wantReads int
	}{
		{"whole, short", true, "MemTotal: 1 kB\n", 1},
		{"records, short", false, "MemTotal: 1 kB\n", 2},
		{"whole, longer than the buffer", true, long, 4}, // 4096, 4096, the rest, the end
		{"records, longer than the buffer", false, long, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := &keepingFS{content: tc.content}
			k := kpath.Keep(fsys, "/proc/meminfo")
			if tc.whole {
				k = kpath.KeepWhole(fsys, "/proc/meminfo")
			}
			b, err := k.ReadFile()
			require.NoError(t, err)
			require.Equal(t, tc.content, string(b))
			require.Equal(t, tc.wantReads, fsys.reads)
		})
	}
}

// Writes reuse one descriptor at offset 0 (a sysfs store takes the value
// whatever the offset, but a file position past a page would be odd to
// leave); a failed write drops it and reports the kernel's errno.
func TestKeptWrite(t *testing.T) {
	fsys := &keepingFS{}
	k := kpath.KeepForWrite(fsys, "/sys/devices/system/memory/soft_offline_page")
	require.NoError(t, k.Open())
	for _, v := range []string{"0x1000\n", "0x2000\n"} {
		require.NoError(t, k.WriteFile([]byte(v)))
	}
	require.Equal(t, 1, fsys.opens)
	fsys.failNextWrites = 1
	require.ErrorIs(t, k.WriteFile([]byte("0x3000\n")), syscall.EBUSY)
	require.NoError(t, k.WriteFile([]byte("0x4000\n")))
	require.Equal(t, 2, fsys.opens, "opened again after the failed write")
	require.Equal(t, []string{"0:0x1000\n", "0:0x2000\n", "0:0x4000\n"}, fsys.writes)

	_, err := k.ReadFile()
	require.ErrorContains(t, err, "kept for writing")
	require.ErrorContains(t, kpath.Keep(fsys, "/proc/meminfo").WriteFile([]byte("1")), "kept for reading")
}
