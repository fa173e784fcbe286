package edac

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/tracefs"
)

var kernels = []string{"6.1", "6.12"}

func loadFormat(t testing.TB, kernel string) *tracefs.Format {
	t.Helper()
	path := "testdata/mc_event/" + kernel + "/format"
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := tracefs.ParseFormat(path, "ras", data)
	require.NoError(t, err)
	return f
}

// buildPayload lays out a record the way the kernel does: fixed fields at
// the offsets of the format, then each __data_loc string (with its NUL)
// after the fixed part, its field holding (length << 16) | offset.
func buildPayload(t testing.TB, f *tracefs.Format, ints map[string]int64, strs map[string]string) []byte {
	t.Helper()
	data := make([]byte, f.MinSize())
	binary.LittleEndian.PutUint16(data, f.ID)
	for name, v := range ints {
		fld, ok := f.Field(name)
		require.True(t, ok, "format has no field %q", name)
		b := data[fld.Offset : fld.Offset+fld.Size]
		switch fld.Size {
		case 1:
			b[0] = byte(v)
		case 2:
			binary.LittleEndian.PutUint16(b, uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(b, uint32(v))
		case 8:
			binary.LittleEndian.PutUint64(b, uint64(v))
		default:
			t.Fatalf("field %q has size %d", name, fld.Size)
		}
	}
	for _, fld := range f.Fields { // format order keeps the layout stable
		if !fld.DataLoc {
			continue
		}
		s := strs[fld.Name] + "\x00"
		loc := uint32(len(s))<<16 | uint32(len(data))
		binary.LittleEndian.PutUint32(data[fld.Offset:], loc)
		data = append(data, s...)
	}
	return data
}

// mcEvent is the arguments of trace_mc_event in the test's words.
type mcEvent struct {
	typ, count, mc   int64
	top, mid, low    int64
	addr, grain, syn int64
	msg, label       string
	detail           string
}

func (e mcEvent) record(t testing.TB, f *tracefs.Format) *tracefs.Record {
	data := buildPayload(t, f, map[string]int64{
		"error_type": e.typ, "error_count": e.count, "mc_index": e.mc,
		"top_layer": e.top, "middle_layer": e.mid, "lower_layer": e.low,
		"address": e.addr, "grain_bits": e.grain, "syndrome": e.syn,
	}, map[string]string{"msg": e.msg, "label": e.label, "driver_detail": e.detail})
	return &tracefs.Record{Format: f, BufferCPU: 3, Data: data}
}

func TestFromMCEvent(t *testing.T) {
	received := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   mcEvent
		want fault.Event
	}{
		{
			name: "skx corrected with row",
			in: mcEvent{
				typ: 0, count: 1, mc: 0, top: 1, mid: 0, low: -1,
				addr: 0x1234567040, grain: 6, syn: 0,
				msg: "memory read error", label: "CPU_SrcID#0_MC#0_Chan#1_DIMM#0",
				detail: "mem_addr:0x1234567040 err_code:0x0000:0x009f socket:0 imc:0 rank:1 bg:2 ba:3 row:0x1a2b col:0x3f8",
			},
			want: fault.Event{
				Severity: fault.SeverityCorrected, Count: 1, MC: 0, Layers: [3]int{1, 0, U},
				PhysAddr: 0x1234567040, AddrValid: true, AddrLSB: 6,
				DIMMLabel: "CPU_SrcID#0_MC#0_Chan#1_DIMM#0",
				Row:       "mc0/1:0:-1/socket0/imc0/rank1/bg2/bank3/row6699",
			},
		},
		{
			name: "ghes uncorrected, APEI location without row",
			in: mcEvent{
				typ: 1, count: 1, mc: 1, top: 3, mid: -1, low: -1,
				addr: 0xbd0db44000, grain: 12, syn: 0,
				label:  "N1 DIMM_L0",
				detail: "APEI location: node:1 card:3 module:0 rank:0 bank:256 col:10 bit_pos:16 handle:0x0052 status(0x0000000000000400): Storage error in DRAM memory",
			},
			want: fault.Event{
				Severity: fault.SeverityUncorrectedRecoverable, Count: 1, MC: 1, Layers: [3]int{3, U, U},
				PhysAddr: 0xbd0db44000, AddrValid: true, AddrLSB: 12, DIMMLabel: "N1 DIMM_L0",
			},
		},
		{
			name: "ghes corrected with decimal row",
			in: mcEvent{
				typ: 0, count: 3, mc: 1, top: 3, mid: -1, low: -1, addr: 0xbd0db44000, grain: 12,
				label:  "N1 DIMM_L0",
				detail: "node:1 card:3 module:0 rank:0 bank:256 device:0 row:4660 column:10 bit_position:16",
			},
			want: fault.Event{
				Severity: fault.SeverityCorrected, Count: 3, MC: 1, Layers: [3]int{3, U, U},
				PhysAddr: 0xbd0db44000, AddrValid: true, AddrLSB: 12, DIMMLabel: "N1 DIMM_L0",
				Row: "mc1/3:-1:-1/node1/card3/module0/rank0/bank256/row4660",
			},
		},
		{
			name: "deferred, no address, error_count 0 means one",
			in: mcEvent{
				typ: 2, count: 0, mc: 2, top: 1, mid: 0, low: -1,
				label: "mc#2csrow#1channel#0",
			},
			want: fault.Event{
				Severity: fault.SeverityDeferred, Count: 1, MC: 2, Layers: [3]int{1, 0, U},
				DIMMLabel: "mc#2csrow#1channel#0",
			},
		},
		{
			name: "fatal on a DIMM the driver could not single out",
			in: mcEvent{
				typ: 3, count: 2, mc: 0, top: 0, mid: -1, low: -1, addr: 0x7f000, grain: 12,
				label: "DIMM_A1 or DIMM_A2",
			},
			want: fault.Event{
				Severity: fault.SeverityFatal, Count: 2, MC: 0, Layers: [3]int{0, U, U},
				PhysAddr: 0x7f000, AddrValid: true, AddrLSB: 12, DIMMLabel: "DIMM_A1 or DIMM_A2",
			},
		},
		{
			name: "placeholder label names no DIMM",
			in:   mcEvent{typ: 0, count: 1, mc: 0, top: -1, mid: -1, low: -1, label: "any memory"},
			want: fault.Event{Severity: fault.SeverityCorrected, Count: 1, MC: 0, Layers: [3]int{U, U, U}},
		},
		{
			// amd64_edac, a Zen UMC error without MCA_SYND: logged at csrow 0
			// with no address; the label is the counter's, not the error's.
			name: "amd64_edac could not place the error",
			in: mcEvent{
				typ: 0, count: 1, mc: 1, top: 0, mid: 3, low: -1,
				msg: "MCA_SYND not valid - unknown syndrome and csrow", label: "mc#1csrow#0channel#3",
			},
			want: fault.Event{
				Severity: fault.SeverityCorrected, Count: 1, MC: 1, Layers: [3]int{0, 3, U},
				DIMMLabel: "mc#1csrow#0channel#3", LocatedBy: fault.LocatedByUnplaced,
			},
		},
		{
			name: "largest error_count and mc_index",
			in:   mcEvent{typ: 0, count: 65535, mc: 255, top: 127, mid: 0, low: 0, label: "x"},
			want: fault.Event{Severity: fault.SeverityCorrected, Count: 65535, MC: 255, Layers: [3]int{127, 0, 0}, DIMMLabel: "x"},
		},
	}
	for _, kernel := range kernels {
		f := loadFormat(t, kernel)
		for _, tt := range tests {
			t.Run(kernel+"/"+tt.name, func(t *testing.T) {
				rec := tt.in.record(t, f)
				got, err := FromMCEvent(rec, received)
				require.NoError(t, err)
				require.Equal(t, fault.SourceTraceMC, got.Source)
				require.Equal(t, received, got.Received)
				require.Equal(t, fault.ClassMemory, got.Class)
				require.Equal(t, U, got.CPU, "mc_event has no cpu field; the buffer CPU is not it")
				require.Equal(t, tt.want.Severity, got.Severity)
				require.Equal(t, tt.want.Count, got.Count)
				require.Equal(t, tt.want.MC, got.MC)
				require.Equal(t, tt.want.Layers, got.Layers)
				require.Equal(t, tt.want.PhysAddr, got.PhysAddr)
				require.Equal(t, tt.want.AddrValid, got.AddrValid)
				require.Equal(t, tt.want.AddrLSB, got.AddrLSB)
				require.Equal(t, tt.want.DIMMLabel, got.DIMMLabel)
				require.Equal(t, tt.want.Row, got.Row)
				require.Equal(t, tt.want.LocatedBy, got.LocatedBy)
				require.Equal(t, uint64(tt.in.syn), got.Synd)
				require.Contains(t, got.Detail, tt.in.label)
				require.Contains(t, got.Detail, tt.in.detail)

				evs, err := TraceDecoder(rec, received)
				require.NoError(t, err)
				require.Equal(t, []fault.Event{got}, evs)
			})
		}
	}
}

func TestFromMCEventNegativeSyndrome(t *testing.T) {
	// address and syndrome are C longs: the top bit set must not be lost.
	f := loadFormat(t, "6.12")
	rec := mcEvent{typ: 0, count: 1, addr: -4096, syn: -1, top: -1, mid: -1, low: -1}.record(t, f)
	ev, err := FromMCEvent(rec, time.Time{})
	require.NoError(t, err)
	require.Equal(t, uint64(0xfffffffffffff000), ev.PhysAddr)
	require.Equal(t, ^uint64(0), ev.Synd)
}

func TestFromMCEventInformational(t *testing.T) {
	for _, kernel := range kernels {
		f := loadFormat(t, kernel)
		rec := mcEvent{typ: 4, count: 1, top: -1, mid: -1, low: -1, label: "N0 DIMM_A0"}.record(t, f)
		_, err := FromMCEvent(rec, time.Time{})
		require.ErrorIs(t, err, ErrInformational)
		evs, err := TraceDecoder(rec, time.Time{})
		require.NoError(t, err)
		require.Empty(t, evs)
	}
}

func TestFromMCEventBadRecords(t *testing.T) {
	f := loadFormat(t, "6.1")
	good := mcEvent{typ: 0, count: 1, top: 0, mid: -1, low: -1, label: "DIMM_A1", detail: "row:0x10"}
	labelField, _ := f.Field("label")
	detailField, _ := f.Field("driver_detail")

	tests := []struct {
		name    string
		mangle  func(data []byte) []byte
		wantErr string
	}{
		{"empty", func(d []byte) []byte { return nil }, "beyond record"},
		{"truncated in the fixed part", func(d []byte) []byte { return d[:30] }, "beyond record"},
		{"strings cut off", func(d []byte) []byte { return d[:f.MinSize()+3] }, "beyond record"},
		{"data_loc offset past the end", func(d []byte) []byte {
			binary.LittleEndian.PutUint32(d[labelField.Offset:], 8<<16|0xfff0)
			return d
		}, "beyond record"},
		{"data_loc length past the end", func(d []byte) []byte {
			loc := binary.LittleEndian.Uint32(d[detailField.Offset:])
			binary.LittleEndian.PutUint32(d[detailField.Offset:], 0xffff<<16|loc&0xffff)
			return d
		}, "beyond record"},
		{"unknown error_type", func(d []byte) []byte {
			binary.LittleEndian.PutUint32(d[8:], 9)
			return d
		}, "unknown error_type 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := good.record(t, f)
			rec.Data = tt.mangle(rec.Data)
			_, err := FromMCEvent(rec, time.Time{})
			require.ErrorContains(t, err, tt.wantErr)
			evs, err := TraceDecoder(rec, time.Time{})
			require.Error(t, err)
			require.Empty(t, evs)
		})
	}

	_, err := FromMCEvent(nil, time.Time{})
	require.Error(t, err)
	_, err = FromMCEvent(&tracefs.Record{}, time.Time{})
	require.Error(t, err)
}

func TestFromMCEventMissingField(t *testing.T) {
	// A kernel that renamed a field must give a clear error, not a zero.
	data, err := os.ReadFile("testdata/mc_event/6.12/format")
	require.NoError(t, err)
	text := strings.Replace(string(data), "grain_bits;", "grain_shift;", 1)
	f, err := tracefs.ParseFormat("edited", "ras", []byte(text))
	require.NoError(t, err)
	rec := &tracefs.Record{Format: f, Data: make([]byte, 128)}
	_, err = FromMCEvent(rec, time.Time{})
	require.ErrorIs(t, err, tracefs.ErrNoField)
	require.ErrorContains(t, err, "grain_bits")
}

func TestRowKey(t *testing.T) {
	layers := [3]int{2, 0, U}
	tests := []struct {
		name, detail, want string
	}{
		{"none", "", ""},
		{"no row", "APEI location: node:1 card:3 module:0 rank:0 bank:256 col:10 bit_pos:16", ""},
		{"hex row", "row:0x1234", "mc0/2:0:-1/row4660"},
		{"decimal row", "row:1234", "mc0/2:0:-1/row1234"},
		{"skx", "err_code:0x0000:0x009f socket:1 imc:0 rank:0 bg:1 ba:2 row:0x1234 col:0x10", "mc0/2:0:-1/socket1/imc0/rank0/bg1/bank2/row4660"},
		{"adxl spelling", "ProcessorSocketId:0x1 MemoryControllerId:0x0 ChannelId:0x2 PhysicalRankId:0x1 Row:0x1234 Column:0x10 Bank:0x2 BankGroup:0x1", "mc0/2:0:-1/socket1/imc0/chan2/rank1/bg1/bank2/row4660"},
		{"cper with bank group", "node:0 card:0 module:1 rank:1 bank_group:2 bank_address:3 device:5 row:77 column:8 bit_position:3", "mc0/2:0:-1/node0/card0/module1/rank1/bg2/bank3/row77"},
		{"first occurrence wins", "row:5 row:6 rank:1 rank:2", "mc0/2:0:-1/rank1/row5"},
		{"bad row value", "row:0xZZ rank:1", ""},
		{"row without value", "row: 12", ""},
		{"column is not part of the row", "rank:0 row:9 col:1", "mc0/2:0:-1/rank0/row9"},
		{"commas", "rank:3,bank:4,row:0x5", "mc0/2:0:-1/rank3/bank4/row5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, RowKey(0, layers, tt.detail))
		})
	}
	// Two DIMMs, or two ranks of one DIMM, with the same row number differ.
	require.NotEqual(t, RowKey(0, [3]int{0, 0, U}, "row:5"), RowKey(0, [3]int{1, 0, U}, "row:5"))
	require.NotEqual(t, RowKey(0, layers, "rank:0 row:5"), RowKey(0, layers, "rank:1 row:5"))
	require.NotEqual(t, RowKey(0, layers, "row:5"), RowKey(1, layers, "row:5"))
}

func FuzzFromMCEvent(f *testing.F) {
	formats := []*tracefs.Format{loadFormat(f, "6.1"), loadFormat(f, "6.12")}
	seed := mcEvent{typ: 0, count: 1, top: 1, mid: 0, low: -1, addr: 0x1000, grain: 6,
		label: "CPU_SrcID#0_MC#0_Chan#1_DIMM#0", detail: "rank:1 row:0x1a2b"}
	f.Add(seed.record(f, formats[0]).Data, false)
	f.Add(seed.record(f, formats[1]).Data, true)
	f.Add([]byte{}, false)
	f.Add(make([]byte, 60), true)
	f.Fuzz(func(t *testing.T, data []byte, newer bool) {
		fm := formats[0]
		if newer {
			fm = formats[1]
		}
		rec := &tracefs.Record{Format: fm, Data: data}
		ev, err := FromMCEvent(rec, time.Time{})
		if err != nil {
			return
		}
		require.GreaterOrEqual(t, ev.Count, uint32(1))
		require.Equal(t, fault.ClassMemory, ev.Class)
		require.LessOrEqual(t, ev.AddrLSB, uint8(64))
		for _, l := range ev.Layers {
			require.GreaterOrEqual(t, l, U)
		}
	})
}

func FuzzRowKey(f *testing.F) {
	for _, s := range []string{
		"row:0x1234", "socket:1 imc:0 rank:0 bg:1 ba:2 row:0x1234 col:0x10",
		"APEI location: node:1 card:3 module:0 rank:0 bank:256 col:10 bit_pos:16", "row:", ":", "row:0x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, detail string) {
		key := RowKey(3, [3]int{0, U, U}, detail)
		if key != "" {
			require.True(t, strings.HasPrefix(key, "mc3/0:-1:-1/"), key)
			require.Contains(t, key, "/row")
		}
	})
}

func BenchmarkFromMCEvent(b *testing.B) {
	f := loadFormat(b, "6.12")
	rec := mcEvent{
		typ: 0, count: 1, mc: 0, top: 1, mid: 0, low: -1, addr: 0x1234567040, grain: 6,
		msg: "memory read error", label: "CPU_SrcID#0_MC#0_Chan#1_DIMM#0",
		detail: "mem_addr:0x1234567040 err_code:0x0000:0x009f socket:0 imc:0 rank:1 bg:2 ba:3 row:0x1a2b col:0x3f8",
	}.record(b, f)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FromMCEvent(rec, now); err != nil {
			b.Fatal(err)
		}
	}
}
