package kpath

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// OS.ReadFile reads what os.ReadFile reads: empty, one page, several pages,
// procfs files whose size stat does not know, and fails the same way.
func TestOSReadFile(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		size int
	}{{"empty", 0}, {"short", 2}, {"page", 4096}, {"pages", 3*4096 + 17}} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			want := bytes.Repeat([]byte("0123456789abcdef"), tt.size/16+1)[:tt.size]
			require.NoError(t, os.WriteFile(path, want, 0o644))
			got, err := OS{}.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
	t.Run("procfs", func(t *testing.T) {
		// stat says 0 bytes; the content is generated on read.
		got, err := OS{}.ReadFile("/proc/self/smaps")
		require.NoError(t, err)
		require.Greater(t, len(got), 4096, "several pages of mappings")
		require.Contains(t, string(got), "Rss:")
	})
	t.Run("missing", func(t *testing.T) {
		_, err := OS{}.ReadFile(filepath.Join(dir, "nope"))
		require.ErrorIs(t, err, fs.ErrNotExist)
		var pe *fs.PathError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "open", pe.Op)
	})
	t.Run("directory", func(t *testing.T) {
		_, err := OS{}.ReadFile(dir)
		require.ErrorIs(t, err, unix.EISDIR)
	})
}

// OS.ReadAt reads as os.File.ReadAt does: whole, short with io.EOF at the
// end, nothing past it, and fails on a missing file.
func TestOSReadAt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kpageflags")
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	for _, tt := range []struct {
		name string
		off  int64
		n    int
	}{{"start", 0, 8}, {"middle", 4096 + 8, 64}, {"across the end", int64(len(data)) - 5, 8}, {"past the end", int64(len(data)) + 8, 8}} {
		t.Run(tt.name, func(t *testing.T) {
			want := make([]byte, tt.n)
			wn, werr := f.ReadAt(want, tt.off)
			got := make([]byte, tt.n)
			n, err := OS{}.ReadAt(path, got, tt.off)
			require.Equal(t, wn, n)
			require.Equal(t, werr, err)
			require.Equal(t, want[:wn], got[:n])
		})
	}
	_, err = OS{}.ReadAt(path+".missing", make([]byte, 8), 0)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// OS.WriteFile replaces a plain file's content in one write and reports
// the open's and the write's errors with the path.
func TestOSWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "soft_offline_page")
	require.NoError(t, os.WriteFile(path, []byte("a longer earlier value\n"), 0o644))
	require.NoError(t, OS{}.WriteFile(path, []byte("0x1234000\n")))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "0x1234000\n", string(got))

	err = OS{}.WriteFile(filepath.Join(dir, "missing"), []byte("x"))
	require.ErrorIs(t, err, fs.ErrNotExist, "an attribute that is not there is not created")
	var pe *fs.PathError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "open", pe.Op)

	// /dev/full fails every write with ENOSPC: the write's own error.
	err = OS{}.WriteFile("/dev/full", []byte("x"))
	require.ErrorIs(t, err, unix.ENOSPC)
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "write", pe.Op)
}
