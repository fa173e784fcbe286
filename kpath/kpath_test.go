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
