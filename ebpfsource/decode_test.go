package ebpfsource

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/edac"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/mce"
	"github.com/selfprotect/selfprotect/tracefs"
)

var received = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

var testDecoders = map[string]tracefs.Decoder{
	"mce/mce_record": mce.TraceDecoder,
	"ras/mc_event":   edac.TraceDecoder,
}

// decodeOnly is a Source with formats and decoders but no kernel objects:
// enough to run decode on wire bytes.
func decodeOnly(t testing.TB) *Source {
	t.Helper()
	spec, err := loadProbes()
	require.NoError(t, err)
	formats, err := wireFormats(spec.Types)
	require.NoError(t, err)
	s := newSource(Config{Decoders: testDecoders}.withDefaults(), &ebpf.Collection{Maps: map[string]*ebpf.Map{}}, formats)
	for _, p := range probes {
		s.adopt(p)
	}
	return s
}

// toWire lays out a kernel record as the probe would: each wire field
// copied from the kernel field of the same name (an absent one stays zero,
// as the probe leaves ppin on 6.1), strings NUL-terminated in place.
func toWire(t *testing.T, wf *tracefs.Format, kind uint32, cpu int, rec *tracefs.Record) []byte {
	t.Helper()
	out := make([]byte, wf.MinSize())
	binary.LittleEndian.PutUint32(out, kind)
	binary.LittleEndian.PutUint32(out[4:], uint32(cpu))
	for _, fld := range wf.Fields {
		if !rec.Format.Has(fld.Name) {
			continue
		}
		dst := out[fld.Offset : fld.Offset+fld.Size]
		if fld.Array {
			kf, _ := rec.Format.Field(fld.Name)
			if kf.DataLoc || kf.Type == "char[]" || kf.Array && fld.Type[:4] == "char" {
				s, err := rec.String(fld.Name)
				require.NoError(t, err)
				require.Less(t, len(s), fld.Size, "%s does not fit", fld.Name)
				copy(dst, s)
				continue
			}
			copy(dst, rec.Data[kf.Offset:kf.Offset+kf.Size])
			continue
		}
		v, err := rec.Uint(fld.Name)
		require.NoError(t, err)
		switch fld.Size {
		case 1:
			dst[0] = byte(v)
		case 2:
			binary.LittleEndian.PutUint16(dst, uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(dst, uint32(v))
		case 8:
			binary.LittleEndian.PutUint64(dst, v)
		}
	}
	return out
}

// An mce_record read through eBPF must decode to the very event the
// tracefs path makes of the same record: real records captured from 6.1
// and 6.12, AMD and Intel guests, memory and cache errors.
func TestMCERecordDecodesLikeTracefs(t *testing.T) {
	s := decodeOnly(t)
	for _, cell := range []string{"6.1-amd", "6.1-intel", "6.12-amd", "6.12-intel"} {
		t.Run(cell, func(t *testing.T) {
			path := filepath.Join("testdata", cell, "mce_record.format")
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			kf, err := tracefs.ParseFormat(path, "mce", data)
			require.NoError(t, err)
			n := 0
			for _, cpu := range []string{"cpu1.bin", "cpu2.bin"} {
				page, err := os.ReadFile(filepath.Join("testdata", cell, cpu))
				require.NoError(t, err)
				res, err := tracefs.ParsePage(page, 1, tracefs.NewFormats(kf))
				require.NoError(t, err)
				for i := range res.Records {
					rec := &res.Records[i]
					want, err := mce.TraceDecoder(rec, received)
					require.NoError(t, err)
					raw := toWire(t, s.formats[kindMCERecord], kindMCERecord, 3, rec)
					got, ok := s.decode(kindMCERecord, raw, received)
					require.True(t, ok)
					require.Len(t, got, 1)
					require.Equal(t, fault.SourceEBPF, got[0].Source)
					want[0].Source = fault.SourceEBPF
					require.Equal(t, want[0], got[0])
					n++
				}
			}
			require.Positive(t, n, "no records in the captures")
		})
	}
}

// mc_event has no capture (no EDAC driver binds in QEMU): a record laid out
// as the kernel's format says, with the strings of a real GHES report.
func TestMCEventDecodesLikeTracefs(t *testing.T) {
	s := decodeOnly(t)
	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			kf := kernelFormat(t, series, probes[1])
			rec := &tracefs.Record{Format: kf, Data: kernelPayload(t, kf,
				map[string]int64{"error_type": 0, "error_count": 3, "mc_index": 1, "top_layer": 1, "middle_layer": 3,
					"lower_layer": -1, "address": 0x2799040, "grain_bits": 12, "syndrome": 0x55},
				map[string]string{"msg": "memory read error", "label": "DIMM_B3",
					"driver_detail": "APEI location: node:1 card:3 module:0 rank:0 bank:256 col:10 bit_pos:16"})}
			want, err := edac.TraceDecoder(rec, received)
			require.NoError(t, err)
			require.Len(t, want, 1)
			got, ok := s.decode(kindMCEvent, toWire(t, s.formats[kindMCEvent], kindMCEvent, 0, rec), received)
			require.True(t, ok)
			want[0].Source = fault.SourceEBPFMC
			require.Equal(t, want, got)
			require.Equal(t, fault.Unknown, got[0].Layers[2], "a signed -1 layer survives the wire")
			require.EqualValues(t, 3, got[0].Count)
		})
	}
}

// kernelPayload lays out a record as the kernel does: fixed fields at the
// format's offsets, then each __data_loc string after the fixed part.
func kernelPayload(t *testing.T, f *tracefs.Format, ints map[string]int64, strs map[string]string) []byte {
	t.Helper()
	data := make([]byte, f.MinSize())
	for name, v := range ints {
		fld, ok := f.Field(name)
		require.True(t, ok, name)
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
		}
	}
	for _, fld := range f.Fields {
		if !fld.DataLoc {
			continue
		}
		str := strs[fld.Name] + "\x00"
		binary.LittleEndian.PutUint32(data[fld.Offset:], uint32(len(str))<<16|uint32(len(data)))
		data = append(data, str...)
	}
	return data
}

func TestDecodeCountsWhatItCannotUse(t *testing.T) {
	s := decodeOnly(t)
	wf := s.formats[kindMCERecord]
	full := make([]byte, wf.MinSize())
	binary.LittleEndian.PutUint32(full, kindMCERecord)
	cases := []struct {
		name  string
		kind  uint32
		raw   []byte
		count func(*counters) uint64
	}{
		{"shorter than its format", kindMCERecord, full[:40], func(c *counters) uint64 { return c.malformed.Load() }},
		{"unknown kind", 99, full, func(c *counters) uint64 { return c.malformed.Load() }},
		// status 0 lacks VAL: mce's decoder rejects it.
		{"decoder rejects", kindMCERecord, full, func(c *counters) uint64 { return c.undecodable.Load() }},
		{"nobody decodes aer_event", kindAER, make([]byte, s.formats[kindAER].MinSize()), func(c *counters) uint64 { return c.noDecoder.Load() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := c.count(&s.counts)
			ev, ok := s.decode(c.kind, c.raw, received)
			require.False(t, ok)
			require.Empty(t, ev)
			require.Equal(t, before+1, c.count(&s.counts))
		})
	}
}

func TestHandleSendsEventsAndFlagsNotices(t *testing.T) {
	s := decodeOnly(t)
	out := make(chan fault.Event, 4)
	notice := make([]byte, headerSize)
	require.True(t, s.handle(t.Context(), notice, out), "a notice starts sweeping")
	require.False(t, s.handle(t.Context(), []byte{1, 0}, out), "a short record is no notice")
	require.EqualValues(t, 1, s.counts.malformed.Load())
	require.Empty(t, out)
}
