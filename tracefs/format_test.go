package tracefs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func loadFormat(t testing.TB, kernel, event string) *Format {
	t.Helper()
	p := filepath.Join("testdata", kernel, "events", event, "format")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	f, err := ParseFormat(p, filepath.Dir(event), data)
	require.NoError(t, err)
	return f
}

func TestParseFormatRealKernels(t *testing.T) {
	tests := []struct {
		kernel, event string
		id            uint16
		field         string
		offset, size  int
		signed        bool
		dataLoc       bool
	}{
		{"6.1", "mce/mce_record", 113, "bank", 105, 1, false, false},
		{"6.12", "mce/mce_record", 113, "bank", 113, 1, false, false},
		{"6.12", "mce/mce_record", 113, "microcode", 116, 4, false, false},
		{"6.1", "ras/mc_event", 1227, "label", 16, 4, true, true},
		{"6.12", "ras/mc_event", 1351, "label", 16, 4, false, true},
		{"6.12", "ras/mc_event", 1351, "top_layer", 23, 1, true, false},
		{"6.12", "ras/memory_failure_event", 1347, "pfn", 8, 8, false, false},
		{"6.1", "ras/memory_failure_event", 1223, "result", 20, 4, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.kernel+"/"+tc.event+"/"+tc.field, func(t *testing.T) {
			f := loadFormat(t, tc.kernel, tc.event)
			require.Equal(t, tc.id, f.ID)
			fld, ok := f.Field(tc.field)
			require.True(t, ok)
			require.Equal(t, tc.offset, fld.Offset)
			require.Equal(t, tc.size, fld.Size)
			require.Equal(t, tc.signed, fld.Signed)
			require.Equal(t, tc.dataLoc, fld.DataLoc)
		})
	}
	require.False(t, loadFormat(t, "6.1", "mce/mce_record").Has("ppin"))
	require.True(t, loadFormat(t, "6.12", "mce/mce_record").Has("ppin"))
}

func TestParseFormatErrors(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"no id", "name: x\nformat:\n\tfield:u64 a;\toffset:8;\tsize:8;\tsigned:0;\n", "no ID"},
		{"bad id", "name: x\nID: zz\n", "x.fmt:2: bad event ID"},
		{"bad offset", "name: x\nID: 1\nformat:\n\tfield:u64 a;\toffset:-3;\tsize:8;\tsigned:0;\n", "x.fmt:4: field \"a\": bad offset"},
		{"no size", "name: x\nID: 1\nformat:\n\tfield:u64 a;\toffset:8;\n", "x.fmt:4: field line"},
		{"garbage", "name: x\nID: 1\nwhat is this\n", "x.fmt:3: unexpected line"},
		{"dup", "name: x\nID: 1\n\tfield:u64 a;\toffset:8;\tsize:8;\n\tfield:u64 a;\toffset:16;\tsize:8;\n", "declared twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFormat("x.fmt", "s", []byte(tc.text))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestRecordAccessors(t *testing.T) {
	f := loadFormat(t, "6.12", "ras/mc_event")
	data := make([]byte, 80)
	data[0] = byte(f.ID)
	data[1] = byte(f.ID >> 8)
	data[23] = 0xff // top_layer = -1
	data[20] = 7    // error_count
	// label "DIMM_A1" at offset 64, length 8 including NUL
	copy(data[64:], "DIMM_A1\x00")
	data[16], data[17], data[18], data[19] = 64, 0, 8, 0
	r := &Record{Format: f, Data: data}
	n, err := r.Uint("error_count")
	require.NoError(t, err)
	require.Equal(t, uint64(7), n)
	top, err := r.Int("top_layer")
	require.NoError(t, err)
	require.Equal(t, int64(-1), top)
	lbl, err := r.String("label")
	require.NoError(t, err)
	require.Equal(t, "DIMM_A1", lbl)
	_, err = r.Uint("nope")
	require.ErrorIs(t, err, ErrNoField)
	// A data_loc pointing past the end is an error, not a panic.
	data[16] = 78
	_, err = r.String("label")
	require.Error(t, err)
	short := &Record{Format: f, Data: data[:30]}
	_, err = short.Uint("address")
	require.ErrorContains(t, err, "beyond record")
}
