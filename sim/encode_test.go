package sim

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/tracefs"
)

type captureCell struct {
	dir, kernel, cpu string
}

var captureCells = []captureCell{
	{"6.1-amd", "6.1", "amd"}, {"6.1-intel", "6.1", "intel"},
	{"6.12-amd", "6.12", "amd"}, {"6.12-intel", "6.12", "intel"},
}

// capturedEvents decodes one captured trace_pipe_raw page.
func capturedEvents(t *testing.T, cell captureCell, file string) ([]byte, []rawEvent) {
	t.Helper()
	page, err := os.ReadFile(filepath.Join("testdata/capture", cell.dir, file))
	require.NoError(t, err)
	require.Len(t, page, pageSize)
	evs, err := decodePage(page)
	require.NoError(t, err)
	return page, evs
}

func testMachine(t *testing.T, prof Profile) *Machine {
	t.Helper()
	m, err := Build(t.TempDir(), prof)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// The decoder reads the real pages: field values match injections.md.
func TestDecodeCapturedPages(t *testing.T) {
	for _, cell := range captureCells {
		t.Run(cell.dir, func(t *testing.T) {
			m := testMachine(t, Profile{Kernel: cell.kernel, CPU: cell.cpu})
			f := m.events["mce/mce_record"].format
			v := m.prof.vendor()
			for _, tc := range []struct {
				file         string
				n, cpu, bank int
				status, misc uint64
				addrNonZero  bool
			}{
				{"cpu1.bin", 3, 1, v.memBank, v.memStatus, v.memMisc, true},
				{"cpu2.bin", 5, 2, cacheBank, cacheStatus, 0, false},
			} {
				_, evs := capturedEvents(t, cell, tc.file)
				require.Len(t, evs, tc.n)
				for i, ev := range evs {
					require.Len(t, ev.payload, fixedSize(f), "record %d", i)
					if i > 0 {
						require.Greater(t, ev.ts, evs[i-1].ts)
					}
					rec := &tracefs.Record{Format: f, Data: ev.payload}
					get := func(name string) uint64 {
						x, err := rec.Uint(name)
						require.NoError(t, err)
						return x
					}
					require.Equal(t, uint64(f.ID), get("common_type"))
					require.Equal(t, uint64(tc.cpu), get("cpu"))
					require.Equal(t, uint64(tc.bank), get("bank"))
					require.Equal(t, tc.status, get("status"))
					require.Equal(t, tc.misc, get("misc"))
					require.Equal(t, tc.addrNonZero, get("addr") != 0)
					require.Equal(t, uint64(v.cpuvendor), get("cpuvendor"))
					require.Equal(t, uint64(v.cpuid), get("cpuid"))
					if f.Has("microcode") {
						require.Equal(t, uint64(v.microcode), get("microcode"))
					}
				}
			}
		})
	}
}

// blank zeroes the fields that legitimately differ between a capture and
// the simulator: who logged it and when.
func blank(t *testing.T, f *tracefs.Format, payload []byte) []byte {
	t.Helper()
	out := append([]byte(nil), payload...)
	for _, name := range []string{"common_pid", "tsc", "walltime"} {
		fld, ok := f.Field(name)
		require.True(t, ok, name)
		clear(out[fld.Offset : fld.Offset+fld.Size])
	}
	return out
}

// The simulator's payloads for the captured injections equal the kernel's
// bytes, apart from pid and time.
func TestEncodedPayloadsMatchCapture(t *testing.T) {
	for _, cell := range captureCells {
		t.Run(cell.dir, func(t *testing.T) {
			m := testMachine(t, Profile{Kernel: cell.kernel, CPU: cell.cpu})
			f := m.events["mce/mce_record"].format
			for _, file := range []string{"cpu1.bin", "cpu2.bin"} {
				_, evs := capturedEvents(t, cell, file)
				for i, ev := range evs {
					rec := &tracefs.Record{Format: f, Data: ev.payload}
					u := func(name string) uint64 { x, _ := rec.Uint(name); return x }
					got, err := m.mceRecord(MCE{
						CPU: int(u("cpu")), Bank: int(u("bank")), Status: u("status"),
						Addr: u("addr"), Misc: u("misc"), Synd: u("synd"), IPID: u("ipid"),
					}, ev.ts)
					require.NoError(t, err)
					require.Equal(t, blank(t, f, ev.payload), blank(t, f, got), "%s record %d", file, i)
				}
			}
		})
	}
}

// Re-encoding the captured records at their captured times gives the
// captured page byte for byte: headers, length words, time_extend events,
// commit and zero fill.
func TestEncodedPagesMatchCapture(t *testing.T) {
	for _, cell := range captureCells {
		for _, file := range []string{"cpu1.bin", "cpu2.bin"} {
			t.Run(cell.dir+"/"+file, func(t *testing.T) {
				page, evs := capturedEvents(t, cell, file)
				var enc pageEncoder
				for _, ev := range evs {
					require.NoError(t, enc.add(ev.ts, ev.payload))
				}
				require.Equal(t, page, enc.finish())
			})
		}
	}
}

func TestPageEncoderRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		sizes  []int
		deltas []uint64
	}{
		{"small payloads use type_len", []int{4, 60, 112}, []uint64{0, 1, 2}},
		{"large payloads use a length word", []int{116, 120, 300}, []uint64{0, 5, 1 << 26}},
		{"gaps beyond 27 bits use time_extend", []int{112, 120, 8}, []uint64{0, 1 << 27, 5 << 30}},
		{"odd sizes are padded to 4", []int{5, 113, 1}, []uint64{0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var enc pageEncoder
			ts := uint64(1e9)
			var want []rawEvent
			for i, n := range tc.sizes {
				ts += tc.deltas[i]
				p := make([]byte, n)
				for j := range p {
					p[j] = byte(i + j + 1)
				}
				require.NoError(t, enc.add(ts, p))
				padded := append(p, make([]byte, (4-n%4)%4)...)
				want = append(want, rawEvent{ts: ts, payload: padded})
			}
			got, err := decodePage(enc.finish())
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
}

func TestPageEncoderFills(t *testing.T) {
	var enc pageEncoder
	p := make([]byte, 120)
	n := 0
	for enc.add(uint64(n), p) == nil {
		n++
	}
	require.Equal(t, pageDataSize/128, n) // 8-byte header + 120
	evs, err := decodePage(enc.finish())
	require.NoError(t, err)
	require.Len(t, evs, n)
	require.True(t, enc.empty())
}

// The mc_event layout: fixed fields at the format's offsets, strings after
// the 64-byte fixed part with (len<<16)|offset words, padded to 4.
func TestMCEventPayload(t *testing.T) {
	for _, kernel := range []string{"6.1", "6.12"} {
		t.Run(kernel, func(t *testing.T) {
			m := testMachine(t, Profile{Kernel: kernel, CPU: "intel", EDAC: true})
			loc := m.prof.Locate(0x2d94040)
			b, err := m.mcEvent(hwEventErrCorrected, 3, 0x2d94040, loc, "memory read error", loc.driverDetail())
			require.NoError(t, err)
			require.Zero(t, len(b)%4)
			f := m.events["ras/mc_event"].format
			require.Equal(t, 64, fixedSize(f))
			rec := &tracefs.Record{Format: f, Data: b}
			label, err := rec.String("label")
			require.NoError(t, err)
			require.Equal(t, loc.Label, label)
			msg, err := rec.String("msg")
			require.NoError(t, err)
			require.Equal(t, "memory read error", msg)
			detail, err := rec.String("driver_detail")
			require.NoError(t, err)
			require.Contains(t, detail, "row:0x")
			cnt, _ := rec.Uint("error_count")
			require.Equal(t, uint64(3), cnt)
			addr, _ := rec.Uint("address")
			require.Equal(t, uint64(0x2d94040), addr)
			lower, _ := rec.Int("lower_layer")
			require.Equal(t, int64(-1), lower)
			grain, _ := rec.Uint("grain_bits")
			require.Equal(t, uint64(12), grain)
			msgLoc, _ := rec.Uint("msg")
			require.Equal(t, uint64(len(msg)+1)<<16|64, msgLoc)
		})
	}
}
