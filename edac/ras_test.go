package edac

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/tracefs"
)

func rasFormat(t *testing.T, kernel, name string) *tracefs.Format {
	t.Helper()
	p := filepath.Join("..", "tracefs", "testdata", kernel, "events", "ras", name, "format")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	f, err := tracefs.ParseFormat(p, "ras", data)
	require.NoError(t, err)
	return f
}

// record lays out fields by the format, the way the kernel would.
func record(t *testing.T, f *tracefs.Format, ints map[string]uint64, strs map[string]string, raw map[string][]byte) *tracefs.Record {
	t.Helper()
	data := make([]byte, f.MinSize(), f.MinSize()+64)
	for name, v := range ints {
		fld, ok := f.Field(name)
		require.True(t, ok, name)
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], v)
		copy(data[fld.Offset:fld.Offset+fld.Size], b[:fld.Size])
	}
	for name, v := range raw {
		fld, ok := f.Field(name)
		require.True(t, ok, name)
		copy(data[fld.Offset:fld.Offset+fld.Size], v)
	}
	for name, s := range strs {
		fld, ok := f.Field(name)
		require.True(t, ok, name)
		off := len(data)
		data = append(data, append([]byte(s), 0)...)
		binary.LittleEndian.PutUint32(data[fld.Offset:], uint32(off)|uint32(len(s)+1)<<16)
	}
	return &tracefs.Record{Format: f, Data: data}
}

func TestMemoryFailureDecoder(t *testing.T) {
	for _, kernel := range []string{"6.1", "6.12"} {
		f := rasFormat(t, kernel, "memory_failure_event")
		evs, err := MemoryFailureDecoder(record(t, f, map[string]uint64{"pfn": 0x2d94, "type": 16, "result": 3}, nil, nil), time.Unix(5, 0))
		require.NoError(t, err, kernel)
		require.Len(t, evs, 1)
		ev := evs[0]
		require.Equal(t, fault.SourceTraceMemoryFailure, ev.Source)
		require.Equal(t, uint64(0x2d94000), ev.PhysAddr)
		require.True(t, ev.AddrValid)
		require.Equal(t, "kernel memory_failure on pfn 0x2d94: recovery action for free buddy page: Recovered", ev.Detail)

		evs, err = MemoryFailureDecoder(record(t, f, map[string]uint64{"pfn": 1, "type": 99, "result": 1}, nil, nil), time.Unix(5, 0))
		require.NoError(t, err)
		require.Contains(t, evs[0].Detail, "page type 99: Failed")
	}
	_, err := MemoryFailureDecoder(&tracefs.Record{Format: rasFormat(t, "6.12", "memory_failure_event"), Data: make([]byte, 10)}, time.Now())
	require.Error(t, err, "a short record")
}

func TestExtlogDecoder(t *testing.T) {
	f := rasFormat(t, "6.12", "extlog_mem_event")
	compact := make([]byte, 55)
	binary.LittleEndian.PutUint64(compact, cperMemValidNode|cperMemValidCard|cperMemValidModule|cperMemValidBank|cperMemValidRow|cperMemValidRank)
	for off, v := range map[int]uint16{compactNode: 1, compactCard: 3, compactModule: 0, compactBank: 256, compactRow: 0x1234, compactRank: 1} {
		binary.LittleEndian.PutUint16(compact[off:], v)
	}
	tests := []struct {
		name string
		sev  uint64
		data []byte
		want fault.Severity
		row  string
		none bool
	}{
		{name: "corrected with a full CPER location", sev: cperSevCorrected, data: compact, want: fault.SeverityCorrected,
			row: "cper/node1/card3/module0/rank1/bank256/row4660"},
		{name: "recoverable without a location", sev: cperSevRecoverable, want: fault.SeverityUncorrectedRecoverable},
		{name: "informational is not an error", sev: cperSevInfo, none: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := map[string][]byte{}
			if tc.data != nil {
				raw["data"] = tc.data
			}
			rec := record(t, f, map[string]uint64{"err_seq": 7, "etype": 2, "sev": tc.sev, "pa": 0x2d94040, "pa_mask_lsb": 12},
				map[string]string{"fru_text": "DIMM_A1"}, raw)
			evs, err := ExtlogDecoder(rec, time.Unix(5, 0))
			require.NoError(t, err)
			if tc.none {
				require.Empty(t, evs)
				return
			}
			require.Len(t, evs, 1)
			ev := evs[0]
			require.Equal(t, fault.SourceTraceExtlog, ev.Source)
			require.Equal(t, tc.want, ev.Severity)
			require.Equal(t, fault.ClassMemory, ev.Class)
			require.Equal(t, uint64(0x2d94040), ev.PhysAddr)
			require.Equal(t, uint8(12), ev.AddrLSB)
			require.Equal(t, "DIMM_A1", ev.DIMMLabel)
			require.Equal(t, tc.row, ev.Row)
		})
	}
	_, err := ExtlogDecoder(record(t, f, map[string]uint64{"sev": 9}, nil, nil), time.Now())
	require.ErrorContains(t, err, "unknown CPER severity 9")
}
