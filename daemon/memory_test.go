package daemon

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/kpath"
)

func TestBinaryReadOnly(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "self-maps.txt"))
	require.NoError(t, err)
	got, err := binaryReadOnly(b)
	require.NoError(t, err)
	// Code and read-only data of the executable; not its data, not the
	// heap, not another file's mapping, not the vDSO.
	require.Equal(t, []addrRange{{0x400000, 0xa05000}, {0xa05000, 0x144e000}}, got)

	for name, maps := range map[string]string{
		"no file mapping": "c000000000-c004000000 rw-p 00000000 00:00 0\n",
		"only writable":   "0144e000-014b5000 rw-p 0104e000 fd:01 1311790 /usr/sbin/selfprotect\n",
		"a bad range":     "00400000_00a05000 r-xp 00000000 fd:01 1311790 /usr/sbin/selfprotect\n",
		"an empty range":  "00a05000-00a05000 r-xp 00000000 fd:01 1311790 /usr/sbin/selfprotect\n",
		"not hex":         "0040000g-00a05000 r-xp 00000000 fd:01 1311790 /usr/sbin/selfprotect\n",
	} {
		_, err := binaryReadOnly([]byte(maps))
		require.Error(t, err, name)
	}
}

func rssFileKB(t *testing.T) int {
	f, err := os.Open(kpath.Default().ProcPath("self", "status"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no RssFile in status")
	return 0
}

// Dropping the running test binary's code mappings is safe (the test
// goes on running) and shrinks the resident set: the pages come back one
// minor fault at a time, only those used.
func TestDropCodeMappingsOnThisProcess(t *testing.T) {
	before := rssFileKB(t)
	n, err := dropCodeMappings(kpath.OS{}, kpath.Default().ProcPath("self", "maps"))
	require.NoError(t, err)
	require.Positive(t, n)
	after := rssFileKB(t)
	t.Logf("RssFile %d kB -> %d kB (%d kB of mappings dropped)", before, after, n>>10)
	require.Less(t, after, before)
	_, err = dropCodeMappings(kpath.OS{}, filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
