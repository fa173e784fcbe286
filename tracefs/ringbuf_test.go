package tracefs

import (
	"bufio"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var captureCells = []string{"6.1-amd", "6.1-intel", "6.12-amd", "6.12-intel"}

// kernelOf maps a capture cell to the folder of its format files.
func kernelOf(cell string) string { k, _, _ := strings.Cut(cell, "-"); return k }

// loadKernelFormats reads every format file captured for a kernel.
func loadKernelFormats(t testing.TB, kernel string) *Formats {
	t.Helper()
	var fs []*Format
	for _, ev := range []string{"mce/mce_record", "ras/mc_event", "ras/memory_failure_event", "ras/aer_event",
		"ras/extlog_mem_event", "ras/non_standard_event", "ras/arm_event"} {
		fs = append(fs, loadFormat(t, kernel, ev))
	}
	return NewFormats(fs...)
}

func readPage(t testing.TB, cell, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/pages", cell, file))
	require.NoError(t, err)
	require.Len(t, b, PageSize)
	return b
}

// decodedRecord is one line of the "Decoded raw pages" block of a cell's
// injections.md, written by the capture's own decoder.
type decodedRecord struct {
	tsMicros uint64
	length   int
	id       uint16
	name     string
	fields   map[string]uint64
}

// readDecoded returns the decoded records of injections.md keyed by the
// fixture file name they came from (cpu1.bin, cpu2.bin, hardoffline-cpu3.bin).
func readDecoded(t *testing.T, cell string) map[string][]decodedRecord {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata/pages", cell, "injections.md"))
	require.NoError(t, err)
	defer f.Close()
	out := map[string][]decodedRecord{}
	prefix, file := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "# trace-raw-hardoffline":
			prefix = "hardoffline-"
		case strings.HasPrefix(line, "cpu") && strings.Contains(line, ".bin page@0:"):
			name, _, _ := strings.Cut(line, " ")
			file = prefix + name
		case strings.HasPrefix(line, "@"):
			out[file] = append(out[file], parseDecodedLine(t, line))
		}
	}
	require.NoError(t, sc.Err())
	return out
}

func parseDecodedLine(t *testing.T, line string) decodedRecord {
	t.Helper()
	rec := decodedRecord{fields: map[string]uint64{}}
	for _, tok := range strings.Fields(line)[1:] {
		k, v, ok := strings.Cut(strings.TrimSuffix(tok, ":"), "=")
		if !ok {
			rec.name = tok
			continue
		}
		switch k {
		case "ts":
			us, err := strconv.ParseUint(strings.Replace(v, ".", "", 1), 10, 64)
			require.NoError(t, err, line)
			rec.tsMicros = us
		case "len":
			n, err := strconv.Atoi(v)
			require.NoError(t, err, line)
			rec.length = n
		case "id":
			n, err := strconv.ParseUint(v, 10, 16)
			require.NoError(t, err, line)
			rec.id = uint16(n)
		default:
			if k == "pid" {
				k = "common_pid"
			}
			n, err := strconv.ParseUint(v, 0, 64)
			require.NoError(t, err, line)
			rec.fields[k] = n
		}
	}
	return rec
}

// TestParsePageRealCaptures checks every record of every captured page
// against the capture's own decode: every field, the payload length and the
// time stamp.
func TestParsePageRealCaptures(t *testing.T) {
	wantCount := map[string]int{"cpu1.bin": 3, "cpu2.bin": 5, "hardoffline-cpu3.bin": 1}
	for _, cell := range captureCells {
		formats := loadKernelFormats(t, kernelOf(cell))
		decoded := readDecoded(t, cell)
		for file, n := range wantCount {
			t.Run(cell+"/"+file, func(t *testing.T) {
				want := decoded[file]
				require.Len(t, want, n, "injections.md lists %d records for %s", n, file)
				cpu := int(file[len(file)-5] - '0')
				res, err := ParsePage(readPage(t, cell, file), cpu, formats)
				require.NoError(t, err)
				require.False(t, res.Lost())
				require.Zero(t, res.Unknown)
				require.Len(t, res.Records, n)
				for i, rec := range res.Records {
					w := want[i]
					require.Equal(t, w.id, rec.Format.ID)
					require.Equal(t, w.name, rec.Format.Name)
					require.Equal(t, w.length, len(rec.Data))
					require.Equal(t, cpu, rec.BufferCPU)
					require.InDelta(t, float64(w.tsMicros), float64(rec.TS)/1000, 1, "record %d ts", i)
					for name, v := range w.fields {
						got, err := rec.Uint(name)
						require.NoError(t, err)
						require.Equal(t, v, got, "record %d field %s", i, name)
					}
				}
			})
		}
	}
}

// TestParsePageInjectedValues spells out, for one cell per kernel, the
// values the brief injected, so a reader sees them without the markdown.
func TestParsePageInjectedValues(t *testing.T) {
	tests := []struct {
		cell, file string
		status     uint64
		bank       uint64
		cpu        uint64
		addrs      []uint64
	}{
		{"6.12-amd", "cpu1.bin", 0x9c0000000008011b, 4, 1, []uint64{0x2d94040, 0x2d94040, 0x2c14040}},
		{"6.12-amd", "cpu2.bin", 0x9000000000000134, 1, 2, []uint64{0, 0, 0, 0, 0}},
		{"6.1-intel", "cpu1.bin", 0x9c00000000000090, 7, 1, []uint64{0x29f9040, 0x29f9040, 0x2aa6040}},
		{"6.1-intel", "cpu2.bin", 0x9000000000000134, 1, 2, []uint64{0, 0, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.cell+"/"+tc.file, func(t *testing.T) {
			res, err := ParsePage(readPage(t, tc.cell, tc.file), 9, loadKernelFormats(t, kernelOf(tc.cell)))
			require.NoError(t, err)
			require.Len(t, res.Records, len(tc.addrs))
			for i, rec := range res.Records {
				for field, want := range map[string]uint64{"status": tc.status, "bank": tc.bank, "cpu": tc.cpu, "addr": tc.addrs[i]} {
					got, err := rec.Uint(field)
					require.NoError(t, err)
					require.Equal(t, want, got, "record %d %s", i, field)
				}
			}
		})
	}
}

func TestParsePageHardOffline(t *testing.T) {
	for _, cell := range captureCells {
		t.Run(cell, func(t *testing.T) {
			res, err := ParsePage(readPage(t, cell, "hardoffline-cpu3.bin"), 3, loadKernelFormats(t, kernelOf(cell)))
			require.NoError(t, err)
			require.Len(t, res.Records, 1)
			rec := res.Records[0]
			require.Equal(t, "memory_failure_event", rec.Format.Name)
			for field, want := range map[string]uint64{"pfn": 0x10000, "type": 16, "result": 3} {
				got, err := rec.Uint(field)
				require.NoError(t, err)
				require.Equal(t, want, got, field)
			}
		})
	}
}

func TestParsePageUnknownIDs(t *testing.T) {
	// Only ras formats: the mce_record pages hold nothing we know.
	only := NewFormats(loadFormat(t, "6.12", "ras/mc_event"))
	res, err := ParsePage(readPage(t, "6.12-amd", "cpu2.bin"), 2, only)
	require.NoError(t, err)
	require.Empty(t, res.Records)
	require.Equal(t, 5, res.Unknown)
	res, err = ParsePage(readPage(t, "6.12-amd", "cpu2.bin"), 2, nil)
	require.NoError(t, err)
	require.Equal(t, 5, res.Unknown)
}

// pageBuilder writes synthetic pages for the cases the captures lack.
type pageBuilder struct {
	buf []byte
	off int
}

func newPageBuilder(ts uint64) *pageBuilder {
	b := &pageBuilder{buf: make([]byte, PageSize), off: PageHeaderSize}
	binary.LittleEndian.PutUint64(b.buf, ts)
	return b
}

func (b *pageBuilder) word(typeLen, delta uint32) {
	binary.LittleEndian.PutUint32(b.buf[b.off:], typeLen|delta<<5)
	b.off += 4
}

func (b *pageBuilder) u32(v uint32) { binary.LittleEndian.PutUint32(b.buf[b.off:], v); b.off += 4 }

// inline adds a record with a compressed length (payload multiple of 4).
func (b *pageBuilder) inline(delta uint32, id uint16, payload int) {
	b.word(uint32(payload/4), delta)
	binary.LittleEndian.PutUint16(b.buf[b.off:], id)
	b.off += payload
}

// long adds a record with an explicit length word.
func (b *pageBuilder) long(delta uint32, id uint16, payload int) {
	b.word(0, delta)
	b.u32(uint32(payload + 4))
	binary.LittleEndian.PutUint16(b.buf[b.off:], id)
	b.off += (payload + 3) &^ 3
}

func (b *pageBuilder) page(flags uint64) []byte {
	binary.LittleEndian.PutUint64(b.buf[8:], uint64(b.off-PageHeaderSize)|flags)
	return b.buf
}

func TestParsePageSynthetic(t *testing.T) {
	formats := NewFormats(&Format{System: "s", Name: "a", ID: 7}, &Format{System: "s", Name: "b", ID: 8})
	t.Run("time extend, abs stamp, padding, long record", func(t *testing.T) {
		b := newPageBuilder(1000)
		b.inline(5, 7, 8) // ts 1005
		b.word(typeTimeExtend, 3)
		b.u32(2)          // +2<<27+3
		b.inline(1, 8, 4) // +1
		b.word(typePadding, 1)
		b.u32(12) // discarded 16-byte event: the length counts itself
		b.off += 8
		b.word(typeTimeStamp, 9)
		b.u32(1) // absolute 1<<27+9
		b.long(2, 7, 130)
		b.inline(0, 99, 4) // unknown ID
		res, err := ParsePage(b.page(0), 0, formats)
		require.NoError(t, err)
		require.Len(t, res.Records, 3)
		require.Equal(t, uint64(1005), res.Records[0].TS)
		require.Equal(t, uint64(1005+2<<27+3+1), res.Records[1].TS)
		require.Equal(t, uint64(1<<27+9+2), res.Records[2].TS)
		require.Len(t, res.Records[2].Data, 130)
		require.Equal(t, "b", res.Records[1].Format.Name)
		require.Equal(t, 1, res.Skipped)
		require.Equal(t, 1, res.Unknown)
	})
	t.Run("null padding ends the page", func(t *testing.T) {
		b := newPageBuilder(0)
		b.inline(0, 7, 8)
		b.word(typePadding, 0)
		b.inline(0, 7, 8) // never reached
		res, err := ParsePage(b.page(0), 0, formats)
		require.NoError(t, err)
		require.Len(t, res.Records, 1)
	})
	t.Run("missed events with stored count", func(t *testing.T) {
		b := newPageBuilder(0)
		b.inline(0, 7, 8)
		binary.LittleEndian.PutUint64(b.buf[b.off:], 42)
		res, err := ParsePage(b.page(commitMissedEvents|commitMissedStored), 0, formats)
		require.NoError(t, err)
		require.Equal(t, uint64(42), res.Missed)
		require.False(t, res.MissedUnknown)
		require.True(t, res.Lost())
		require.Len(t, res.Records, 1)
	})
	t.Run("missed events without count", func(t *testing.T) {
		b := newPageBuilder(0)
		b.inline(0, 7, 8)
		res, err := ParsePage(b.page(commitMissedEvents), 0, formats)
		require.NoError(t, err)
		require.True(t, res.MissedUnknown)
		require.Zero(t, res.Missed)
	})
	t.Run("abs stamp keeps the running stamp's top bits", func(t *testing.T) {
		require.Equal(t, uint64(1<<59|5), fixAbsTimeStamp(5, 1<<59|3))
		require.Equal(t, uint64(2<<59|1), fixAbsTimeStamp(1, 1<<59|3))
		require.Equal(t, uint64(7), fixAbsTimeStamp(7, 100))
	})
}

func TestParsePageCorrupt(t *testing.T) {
	formats := NewFormats(&Format{System: "s", Name: "a", ID: 7})
	good := func() *pageBuilder { b := newPageBuilder(0); b.inline(0, 7, 8); return b }
	tests := []struct {
		name        string
		page        func() []byte
		wantErr     string
		wantRecords int
	}{
		{"empty", func() []byte { return nil }, "shorter than the 16-byte page header", 0},
		{"garbage commit", func() []byte {
			p := good().page(0)
			p[12] = 0xff
			return p
		}, "offset 8: commit word", 0},
		{"commit past page", func() []byte {
			b := good()
			b.inline(0, 7, 8)
			return b.page(0)[:28]
		}, "offset 8: commit says 24 data bytes, page holds 12", 1},
		{"header cut short", func() []byte {
			b := good()
			binary.LittleEndian.PutUint64(b.buf[8:], uint64(b.off-PageHeaderSize+2))
			return b.buf
		}, "offset 28: event header cut short", 1},
		{"record past end", func() []byte {
			b := good()
			b.inline(0, 7, 8)
			p := b.page(0)
			binary.LittleEndian.PutUint64(p[8:], 20)
			return p
		}, "offset 28: 8-byte record runs past data end 36", 1},
		{"length word too small", func() []byte {
			b := good()
			b.word(0, 0)
			b.u32(3)
			return b.page(0)
		}, "offset 28: data length word 3 is impossible", 1},
		{"length word huge", func() []byte {
			b := good()
			b.word(0, 0)
			b.u32(0xfffffff0)
			return b.page(0)
		}, "data length word 4294967280 is impossible", 1},
		{"record without ID", func() []byte {
			b := good()
			b.word(0, 0)
			b.u32(4)
			return b.page(0)
		}, "0-byte record cannot hold an event ID", 1},
		{"padding past end", func() []byte {
			b := good()
			b.word(typePadding, 1)
			b.u32(4000)
			return b.page(0)
		}, "offset 28: padding of 4000 bytes", 1},
		{"time extend cut", func() []byte {
			b := good()
			b.word(typeTimeExtend, 1)
			return b.page(0)
		}, "offset 28: type 30 event needs 8 bytes", 1},
		{"missed count stored past the page", func() []byte {
			b := good()
			return b.page(commitMissedEvents | commitMissedStored)[:b.off+4]
		}, "", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := ParsePage(tc.page(), 0, formats)
			if tc.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrCorruptPage)
				require.ErrorContains(t, err, tc.wantErr)
			}
			require.Len(t, res.Records, tc.wantRecords)
		})
	}
}

func FuzzParsePage(f *testing.F) {
	for _, cell := range captureCells {
		for _, file := range []string{"cpu1.bin", "cpu2.bin", "hardoffline-cpu3.bin"} {
			b, err := os.ReadFile(filepath.Join("testdata/pages", cell, file))
			require.NoError(f, err)
			f.Add(b)
		}
	}
	f.Add([]byte{})
	formats := NewFormats(loadKernelFormats(f, "6.1").All()...)
	f.Fuzz(func(t *testing.T, page []byte) {
		res, err := ParsePage(page, 0, formats)
		if err != nil {
			require.ErrorIs(t, err, ErrCorruptPage)
		}
		for _, rec := range res.Records {
			require.GreaterOrEqual(t, len(rec.Data), 2)
			// Accessors must stay in bounds on whatever the page held.
			for _, fld := range rec.Format.Fields {
				_, _ = rec.Uint(fld.Name)
				_, _ = rec.String(fld.Name)
			}
		}
	})
}

func BenchmarkParsePage(b *testing.B) {
	formats := loadKernelFormats(b, "6.12")
	// A full page of back-to-back 6.12 mce_records, the worst realistic case.
	one := readPage(b, "6.12-amd", "cpu2.bin")
	rec := one[PageHeaderSize : PageHeaderSize+136] // record plus time extend
	pb := newPageBuilder(0)
	for pb.off+len(rec) <= PageSize {
		copy(pb.buf[pb.off:], rec)
		pb.off += len(rec)
	}
	page := pb.page(0)
	var res PageResult
	require.NoError(b, parsePageInto(page, 0, formats, &res))
	perPage := len(res.Records)
	b.ReportAllocs()
	pages := 0
	for b.Loop() {
		if err := parsePageInto(page, 0, formats, &res); err != nil {
			b.Fatal(err)
		}
		pages++
	}
	b.ReportMetric(float64(perPage*pages)/b.Elapsed().Seconds(), "records/s")
}
