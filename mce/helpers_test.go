package mce

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/tracefs"
)

// cells are the four real captures copied from kernel-data (format file and
// the raw ring-buffer pages of cpu1, the memory errors, and cpu2, the cache
// errors).
var cells = []string{"6.1-amd", "6.1-intel", "6.12-amd", "6.12-intel"}

func loadFormat(t testing.TB, cell string) *tracefs.Format {
	t.Helper()
	p := filepath.Join("testdata", cell, "mce_record.format")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	f, err := tracefs.ParseFormat(p, "mce", data)
	require.NoError(t, err)
	return f
}

// pageRecords slices the event payloads out of one raw ring-buffer page
// (16-byte header: u64 timestamp, u64 commit; then events). It only knows
// the few event header types the captures contain, which is all a fixture
// needs; the real parser lives in tracefs.
func pageRecords(t testing.TB, f *tracefs.Format, path string) []*tracefs.Record {
	t.Helper()
	page, err := os.ReadFile(path)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(page), 16, "%s: short page", path)
	commit := int(binary.LittleEndian.Uint64(page[8:16]) & 0xfffff)
	end := 16 + commit
	require.LessOrEqual(t, end, len(page), "%s: commit beyond page", path)
	var out []*tracefs.Record
	for off := 16; off+4 <= end; {
		hdr := binary.LittleEndian.Uint32(page[off:])
		typeLen := hdr & 0x1f
		switch {
		case typeLen == 0: // length word follows, and counts itself
			n := int(binary.LittleEndian.Uint32(page[off+4:]))
			require.Greater(t, n, 4, "%s@%d: bad length word", path, off)
			out = append(out, &tracefs.Record{Format: f, Data: page[off+8 : off+4+n]})
			off += 4 + n
		case typeLen <= 28: // compressed: payload is typeLen words
			n := int(typeLen) * 4
			out = append(out, &tracefs.Record{Format: f, Data: page[off+4 : off+4+n]})
			off += 4 + n
		case typeLen == 30, typeLen == 31: // time extend, absolute time stamp
			off += 8
		default:
			t.Fatalf("%s@%d: unexpected event type_len %d", path, off, typeLen)
		}
	}
	for _, r := range out {
		require.Equal(t, f.ID, uint16(binary.LittleEndian.Uint16(r.Data)), "%s: event id", path)
	}
	return out
}

// realRecords returns every mce_record captured in a cell, cpu1 first.
func realRecords(t testing.TB, cell string) []*tracefs.Record {
	t.Helper()
	f := loadFormat(t, cell)
	var out []*tracefs.Record
	for _, cpu := range []string{"cpu1.bin", "cpu2.bin"} {
		out = append(out, pageRecords(t, f, filepath.Join("testdata", cell, cpu))...)
	}
	return out
}
