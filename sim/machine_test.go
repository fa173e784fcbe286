package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/tracefs"
)

// fakeClock advances one millisecond per reading.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { c.t = c.t.Add(time.Millisecond); return c.t }

// newInstance creates instances/<name> like the daemon would and lets the
// simulator populate it.
func newInstance(t *testing.T, m *Machine, name string, enable ...string) string {
	t.Helper()
	dir := m.Paths().TracingPath("instances", name)
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, m.Sync())
	for _, ev := range enable {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "events", ev, "enable"), []byte("1\n"), 0o644))
	}
	return dir
}

// drain reads every page waiting in a per-CPU FIFO, as a reader with
// O_NONBLOCK would.
func drain(t *testing.T, instDir string, cpu int) [][]byte {
	t.Helper()
	path := filepath.Join(instDir, "per_cpu", fmt.Sprintf("cpu%d", cpu), "trace_pipe_raw")
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	var pages [][]byte
	for {
		buf := make([]byte, pageSize)
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return pages
		}
		require.NoError(t, err)
		require.Equal(t, pageSize, n, "whole pages only")
		pages = append(pages, buf)
	}
}

// records decodes drained pages into records of the machine's formats.
func records(t *testing.T, m *Machine, pages [][]byte) []*tracefs.Record {
	t.Helper()
	byID := map[uint16]*tracefs.Format{}
	for _, ev := range m.events {
		byID[ev.format.ID] = ev.format
	}
	var out []*tracefs.Record
	for _, p := range pages {
		evs, err := decodePage(p)
		require.NoError(t, err)
		for _, ev := range evs {
			f := byID[uint16(ev.payload[0])|uint16(ev.payload[1])<<8]
			require.NotNil(t, f)
			out = append(out, &tracefs.Record{Format: f, TS: ev.ts, Data: ev.payload})
		}
	}
	return out
}

func u(t *testing.T, r *tracefs.Record, name string) uint64 {
	t.Helper()
	v, err := r.Uint(name)
	require.NoError(t, err)
	return v
}

func TestInstanceIsPopulatedAndForgotten(t *testing.T) {
	m := testMachine(t, Profile{Kernel: "6.1", CPU: "amd"})
	dir := newInstance(t, m, "selfprotect")
	for _, f := range []string{"tracing_on", "buffer_size_kb", "buffer_percent", "trace_clock", "events/enable",
		"events/mce/mce_record/enable", "events/mce/mce_record/format", "events/mce/mce_record/id",
		"events/ras/mc_event/id", "per_cpu/cpu3/stats", "per_cpu/cpu0/trace_pipe_raw", "events/header_page"} {
		_, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, f)
	}
	b, err := os.ReadFile(filepath.Join(dir, "tracing_on"))
	require.NoError(t, err)
	require.Equal(t, "1\n", string(b))
	b, err = os.ReadFile(filepath.Join(dir, "events/mce/mce_record/enable"))
	require.NoError(t, err)
	require.Equal(t, "0\n", string(b))
	want, err := os.ReadFile("testdata/capture/6.1-amd/stats-cpu1.txt")
	require.NoError(t, err)
	stats, err := os.ReadFile(filepath.Join(dir, "per_cpu/cpu1/stats"))
	require.NoError(t, err)
	require.Equal(t, len(splitLines(want)), len(splitLines(stats)))

	require.NoError(t, os.RemoveAll(dir))
	require.NoError(t, m.Sync())
	require.Empty(t, m.instances)
}

func splitLines(b []byte) []string {
	var out []string
	for _, l := range bytesLines(b) {
		key, _, _ := cutColon(l)
		out = append(out, key)
	}
	return out
}

func bytesLines(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}

func cutColon(s string) (string, string, bool) {
	for i := range s {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func TestInjectionReachesEnabledInstance(t *testing.T) {
	for _, kernel := range []string{"6.1", "6.12"} {
		t.Run(kernel, func(t *testing.T) {
			m := testMachine(t, Profile{Kernel: kernel, CPU: "intel"})
			clk := &fakeClock{t: m.boot.Add(10 * time.Second)}
			m.SetClock(clk.now)
			dir := newInstance(t, m, "selfprotect", "mce/mce_record")
			require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
			require.NoError(t, m.InjectCacheCE(2, 5))

			recs := records(t, m, drain(t, dir, 1))
			require.Len(t, recs, 2)
			for _, r := range recs {
				require.Equal(t, uint64(1), u(t, r, "cpu"))
				require.Equal(t, uint64(7), u(t, r, "bank"))
				require.Equal(t, uint64(0x9c00000000000090), u(t, r, "status"))
				require.Equal(t, uint64(0x2d94040), u(t, r, "addr"))
			}
			require.Less(t, recs[0].TS, recs[1].TS)
			require.Len(t, records(t, m, drain(t, dir, 2)), 5)
			require.Empty(t, drain(t, dir, 0))

			stats, err := os.ReadFile(filepath.Join(dir, "per_cpu/cpu2/stats"))
			require.NoError(t, err)
			require.Contains(t, string(stats), "entries: 5\noverrun: 0\n")
			require.Equal(t, uint64(7), m.Stats().Records)
		})
	}
}

func TestInjectionIntoDisabledTracingWritesNothing(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"event disabled", func(t *testing.T, dir string) {}},
		{"tracing off", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "events/mce/mce_record/enable"), []byte("1\n"), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "tracing_on"), []byte("0\n"), 0o644))
		}},
		{"other event enabled", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "events/ras/mc_event/enable"), []byte("1\n"), 0o644))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := testMachine(t, Profile{})
			dir := newInstance(t, m, "selfprotect")
			tc.setup(t, dir)
			require.NoError(t, m.InjectCacheCE(1, 3))
			require.Empty(t, drain(t, dir, 1))
			require.Equal(t, uint64(3), m.Stats().LostToDisabledTracing)
			require.Zero(t, m.Stats().Records)
		})
	}
	t.Run("no instance", func(t *testing.T) {
		m := testMachine(t, Profile{})
		require.NoError(t, m.InjectCacheCE(1, 1))
		require.Equal(t, uint64(1), m.Stats().LostToDisabledTracing)
	})
}

func TestAggregateEnableFiles(t *testing.T) {
	m := testMachine(t, Profile{})
	dir := newInstance(t, m, "selfprotect")
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(dir, "events", p))
		require.NoError(t, err)
		return string(b)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "events/ras/enable"), []byte("1\n"), 0o644))
	require.NoError(t, m.Sync())
	require.Equal(t, "1\n", read("ras/mc_event/enable"))
	require.Equal(t, "0\n", read("mce/mce_record/enable"))
	require.Equal(t, "X\n", read("enable"))

	require.NoError(t, os.WriteFile(filepath.Join(dir, "events/enable"), []byte("0\n"), 0o644))
	require.NoError(t, m.Sync())
	require.Equal(t, "0\n", read("ras/mc_event/enable"))
	require.Equal(t, "0\n", read("ras/enable"))
}

func writeFIFO(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(s)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func meminfoCorrupted(t *testing.T, m *Machine) uint64 {
	t.Helper()
	n, err := readHardwareCorrupted(m.Paths().ProcPath("meminfo"))
	require.NoError(t, err)
	return n
}

func TestSoftOfflinePoisonsPage(t *testing.T) {
	m := testMachine(t, Profile{Kernel: "6.12", CPU: "amd"})
	soft := m.Paths().SysPath("devices/system/memory/soft_offline_page")
	hard := m.Paths().SysPath("devices/system/memory/hard_offline_page")
	require.Zero(t, pageFlagsAt(t, m, 0x2d94)&kpfHWPoison)

	writeFIFO(t, soft, "0x2d94000\n")
	require.NoError(t, m.Sync())
	require.NotZero(t, pageFlagsAt(t, m, 0x2d94)&kpfHWPoison)
	require.Equal(t, uint64(4), meminfoCorrupted(t, m))

	writeFIFO(t, soft, "0x2d94000\n")          // already poisoned: no change
	writeFIFO(t, hard, fmt.Sprint(0x10000000)) // decimal, no newline
	require.NoError(t, m.Sync())
	require.NotZero(t, pageFlagsAt(t, m, 0x10000)&kpfHWPoison)
	require.Zero(t, pageFlagsAt(t, m, 0x10000)&kpfBuddy)
	require.Equal(t, uint64(8), meminfoCorrupted(t, m))

	require.NoError(t, m.FailNextOffline(1))
	require.NoError(t, m.RefuseOffline(0x3))
	writeFIFO(t, soft, "0x1000\n0x3000\n0x3000\nbogus\n0xfffffffff000\n0x4000\n")
	require.NoError(t, m.Sync())
	require.Zero(t, pageFlagsAt(t, m, 0x1)&kpfHWPoison)
	require.Zero(t, pageFlagsAt(t, m, 0x3)&kpfHWPoison)
	require.NotZero(t, pageFlagsAt(t, m, 0x4)&kpfHWPoison)
	require.Equal(t, uint64(12), meminfoCorrupted(t, m))

	var results []string
	for _, r := range m.Offlined() {
		results = append(results, r.Kind+":"+r.Result)
	}
	require.Equal(t, []string{"soft:poisoned", "soft:already-poisoned", "hard:poisoned", "soft:refused",
		"soft:refused", "soft:refused", "soft:invalid", "soft:invalid", "soft:poisoned"}, results)

	// A machine opened again keeps the count.
	m2, err := Open(m.Dir())
	require.NoError(t, err)
	defer m2.Close()
	require.Equal(t, uint64(12), m2.corrupted)
}

func TestCPUOfflineUpdatesLists(t *testing.T) {
	m := testMachine(t, Profile{})
	cpu := m.Paths().SysPath("devices/system/cpu")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(cpu, name))
		require.NoError(t, err)
		return string(b)
	}
	f, err := os.OpenFile(filepath.Join(cpu, "cpu2/online"), os.O_WRONLY, 0) // like kpath.OS.WriteFile
	require.NoError(t, err)
	_, err = f.WriteString("0")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, m.Sync())
	require.Equal(t, "0-1,3\n", read("online"))
	require.Equal(t, "2\n", read("offline"))
	require.ErrorIs(t, m.InjectCacheCE(2, 1), ErrCPUOffline)
	require.ErrorIs(t, m.InjectCacheCE(9, 1), ErrNoSuchCPU)

	require.NoError(t, os.WriteFile(filepath.Join(cpu, "cpu2/online"), []byte("1\n"), 0o644))
	require.NoError(t, m.Sync())
	require.Equal(t, "0-3\n", read("online"))
	require.Equal(t, "\n", read("offline"))
}

// A cpuN/online left empty by a writer killed mid-write reads as the
// kernel's state again once it stayed empty for the grace time; before
// that it may be a live write, however many passes saw it.
func TestTornOnlineFileRestored(t *testing.T) {
	m := testMachine(t, Profile{})
	path := filepath.Join(m.Paths().SysPath("devices/system/cpu"), "cpu3/online")
	read := func() string {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return string(b)
	}
	require.NoError(t, os.WriteFile(path, nil, 0o644))
	for range 5 {
		require.NoError(t, m.Sync())
		require.Empty(t, read(), "within the grace time a write may be in progress")
	}
	// The writer finishes late: its write stands.
	require.NoError(t, os.WriteFile(path, []byte("0\n"), 0o644))
	require.NoError(t, m.Sync())
	require.Equal(t, "0\n", read())

	m.tornGrace = 0
	require.NoError(t, os.WriteFile(path, nil, 0o644))
	require.NoError(t, m.Sync())
	require.Empty(t, read(), "the first pass only notes the empty file")
	require.NoError(t, m.Sync())
	require.Equal(t, "0\n", read(), "then the kernel's state (offline, from the late write) shows")
}

// With EDAC, one memory CE is reported three ways: mce_record, mc_event
// and the DIMM counters.
func TestMemoryCEWithEDAC(t *testing.T) {
	m := testMachine(t, Profile{Kernel: "6.12", CPU: "intel", EDAC: true})
	dir := newInstance(t, m, "selfprotect", "mce/mce_record", "ras/mc_event")
	const addr = 0x2d94040
	require.NoError(t, m.InjectMemoryCE(addr, 2, 1))
	recs := records(t, m, drain(t, dir, 1))
	require.Len(t, recs, 3)
	require.Equal(t, "mce_record", recs[0].Format.Name)
	require.Equal(t, "mce_record", recs[1].Format.Name)
	ev := recs[2]
	require.Equal(t, "mc_event", ev.Format.Name)
	loc := m.Profile().Locate(addr)
	label, err := ev.String("label")
	require.NoError(t, err)
	require.Equal(t, loc.Label, label)
	require.Equal(t, uint64(2), u(t, ev, "error_count"))
	require.Equal(t, uint64(loc.MC), u(t, ev, "mc_index"))

	mc := m.Paths().SysPath("devices/system/edac/mc", fmt.Sprintf("mc%d", loc.MC))
	n, err := readUint(filepath.Join(mc, fmt.Sprintf("dimm%d", loc.DIMM), "dimm_ce_count"))
	require.NoError(t, err)
	require.Equal(t, uint64(2), n)
	n, err = readUint(filepath.Join(mc, "ce_count"))
	require.NoError(t, err)
	require.Equal(t, uint64(2), n)

	require.NoError(t, m.InjectMemoryUE(addr, 0))
	recs = records(t, m, drain(t, dir, 0))
	require.Len(t, recs, 2)
	// The record names the memory controller (its bank) and the channel
	// (MCACOD bits 3:0) the EDAC map puts the address on.
	require.Equal(t, uint64(0xbc00000000000090)|uint64(loc.DIMM), u(t, recs[0], "status"))
	require.Equal(t, uint64(7+loc.MC), u(t, recs[0], "bank"))
	require.Equal(t, uint64(hwEventErrUncorrected), u(t, recs[1], "error_type"))

	require.NoError(t, m.InjectEDAC(1, 1, 1000))
	n, err = readUint(m.Paths().SysPath("devices/system/edac/mc/mc1/dimm1/dimm_ce_count"))
	require.NoError(t, err)
	require.Equal(t, uint64(1000), n)
	require.Error(t, m.InjectEDAC(2, 0, 1))
}

func TestLocateIsDeterministic(t *testing.T) {
	p, err := Profile{EDAC: true, Controllers: 2, DIMMsPerController: 2}.WithDefaults()
	require.NoError(t, err)
	tests := []struct {
		addr     uint64
		mc, dimm int
		row      uint64
	}{
		{0x0, 0, 0, 0}, {0x100000, 0, 1, 0}, {0x200000, 1, 0, 0}, {0x300000, 1, 1, 0},
		{0x400000, 0, 0, 0x20}, {0x8000, 0, 0, 1}, {0x7fff, 0, 0, 0},
	}
	for _, tc := range tests {
		l := p.Locate(tc.addr)
		require.Equal(t, []any{tc.mc, tc.dimm, tc.row}, []any{l.MC, l.DIMM, l.Row}, "%#x", tc.addr)
	}
}

// With the CEC built in, corrected DRAM errors stop at the CEC, which
// offlines the page at its action threshold (2 on the Intel model) and
// lets that one error on to EDAC (mc_event, counters).
func TestCECConsumesMemoryCEs(t *testing.T) {
	m := testMachine(t, Profile{Kernel: "6.12", CPU: "intel", EDAC: true, CEC: true})
	dir := newInstance(t, m, "selfprotect", "mce/mce_record", "ras/mc_event")
	require.NoError(t, m.InjectMemoryCE(0x5000, 1, 0))
	require.Empty(t, m.Offlined())
	require.NoError(t, m.InjectMemoryCE(0x5040, 1, 0))
	recs := records(t, m, drain(t, dir, 0))
	require.Len(t, recs, 3)
	require.Equal(t, "mce_record", recs[0].Format.Name)
	require.Equal(t, "mce_record", recs[1].Format.Name)
	require.Equal(t, "mc_event", recs[2].Format.Name)
	require.Equal(t, uint64(1), u(t, recs[2], "error_count"))
	require.Equal(t, []OfflineRequest{{Kind: "cec", Addr: 0x5000, PFN: 5, Result: OfflinePoisoned}}, m.Offlined())
	require.NotZero(t, pageFlagsAt(t, m, 5)&kpfHWPoison)
	require.Equal(t, uint64(1), m.Stats().CECConsumed, "the second error went on to EDAC")
}

// Firmware-first: GHES gives mc_event only; Intel eMCA gives mce_record and
// extlog_mem_event, no mc_event.
func TestFirmwareFirst(t *testing.T) {
	m := testMachine(t, Profile{Kernel: "6.12", CPU: "amd", EDAC: true, CEC: true, FirmwareFirst: FirmwareGHES})
	dir := newInstance(t, m, "selfprotect", "mce/mce_record", "ras/mc_event", "ras/extlog_mem_event")
	require.NoError(t, m.InjectMemoryCE(0x5000, 2, 0))
	recs := records(t, m, drain(t, dir, 0))
	require.Len(t, recs, 1)
	require.Equal(t, "mc_event", recs[0].Format.Name)
	require.Equal(t, uint64(2), u(t, recs[0], "error_count"))
	require.Zero(t, m.Stats().CECConsumed, "CEC sees no firmware-first error")

	m = testMachine(t, Profile{Kernel: "6.12", CPU: "intel", EDAC: true, FirmwareFirst: FirmwareEMCA})
	dir = newInstance(t, m, "selfprotect", "mce/mce_record", "ras/mc_event", "ras/extlog_mem_event")
	require.NoError(t, m.InjectMemoryCE(0x5040, 1, 0))
	recs = records(t, m, drain(t, dir, 0))
	require.Len(t, recs, 2)
	require.Equal(t, "mce_record", recs[0].Format.Name)
	require.Equal(t, "extlog_mem_event", recs[1].Format.Name)
	require.Equal(t, uint64(0x5000), u(t, recs[1], "pa"))
	fru, err := recs[1].String("fru_text")
	require.NoError(t, err)
	require.Equal(t, m.Profile().Locate(0x5040).Label, fru)

	for _, p := range []Profile{{CPU: "amd", FirmwareFirst: FirmwareEMCA}, {CPU: "intel", FirmwareFirst: FirmwareGHES}, {FirmwareFirst: "bios"}} {
		_, err := p.WithDefaults()
		require.ErrorIs(t, err, ErrBadProfile, "%+v", p)
	}
}

func TestStormFillsPages(t *testing.T) {
	m := testMachine(t, Profile{Kernel: "6.1", CPU: "amd", CPUs: 1})
	dir := newInstance(t, m, "selfprotect", "mce/mce_record")
	require.NoError(t, m.Storm(100, []uint64{0x1000, 0x2000, 0x3000}))
	pages := drain(t, dir, 0)
	require.Equal(t, 3, len(pages)) // 35 records of 116 bytes per page
	recs := records(t, m, pages)
	require.Len(t, recs, 100)
	require.Equal(t, uint64(0x2000), u(t, recs[1], "addr"))
	require.Equal(t, uint64(3), m.Stats().Pages)
}

func TestServeAndControlSocket(t *testing.T) {
	m := testMachine(t, Profile{Kernel: "6.12", CPU: "amd", EDAC: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	var c *Client
	require.Eventually(t, func() bool {
		var err error
		c, err = Dial(m.Dir())
		return err == nil
	}, 30*time.Second, 5*time.Millisecond)
	defer c.Close()

	// Serve populates an instance on its own. The bounds below only guard
	// against a hang: a populate took up to 2.8 s on a loaded 2-core host
	// under -race.
	dir := m.Paths().TracingPath("instances", "selfprotect")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(dir, "tracing_on"))
		return err == nil
	}, 30*time.Second, 5*time.Millisecond)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "events/mce/mce_record/enable"), []byte("1\n"), 0o644))

	require.NoError(t, c.InjectCacheCE(3, 2))
	require.NoError(t, c.InjectMCE(MCE{CPU: 1, Bank: 5, Status: 0x9000000000000150}))
	require.NoError(t, c.InjectMemoryCE(0x4000, 1, 1))
	require.NoError(t, c.InjectMemoryUE(0x4000, 1))
	require.NoError(t, c.InjectEDAC(0, 1, 5))
	require.NoError(t, c.Storm(10, []uint64{0x8000}))
	require.NoError(t, c.FailNextOffline(0))
	require.NoError(t, c.RefuseOffline(7))
	require.Len(t, records(t, m, drain(t, dir, 3)), 2+2) // storm spreads over CPUs

	err := c.InjectCacheCE(99, 1)
	require.ErrorIs(t, err, ErrRemote)
	require.ErrorContains(t, err, "no such cpu")

	writeFIFO(t, m.Paths().SysPath("devices/system/memory/soft_offline_page"), "0x9000\n")
	require.Eventually(t, func() bool {
		off, err := c.Offlined()
		require.NoError(t, err)
		return len(off) == 1 && off[0].Poisoned()
	}, 30*time.Second, 5*time.Millisecond)
	st, err := c.Stats()
	require.NoError(t, err)
	require.Equal(t, uint64(2+1+1+1+10), st.Records)

	raw, err := Dial(m.Dir())
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.call(request{Op: "bogus"})
	require.ErrorContains(t, err, `unknown op "bogus"`)
	_, err = raw.conn.Write([]byte("{not json\n"))
	require.NoError(t, err)
	require.True(t, raw.sc.Scan())
	require.Contains(t, raw.sc.Text(), "bad request")
}

// A Zen model: the DRAM error comes from the UMC bank of its channel with
// an IPID naming the channel, and CEC leaves it to EDAC (its address is a
// normalized one the kernel does not use).
func TestMemoryCEZenCEC(t *testing.T) {
	m := testMachine(t, Profile{Kernel: "6.12", CPU: "amd", SMCA: true, EDAC: true, CEC: true})
	dir := newInstance(t, m, "selfprotect", "mce/mce_record", "ras/mc_event")
	const addr = 0x2d94040
	require.NoError(t, m.InjectMemoryCE(addr, 1, 1))
	recs := records(t, m, drain(t, dir, 1))
	require.Len(t, recs, 2)
	loc := m.Profile().Locate(addr)
	require.Equal(t, umcIPID(loc.DIMM), u(t, recs[0], "ipid"))
	require.Equal(t, uint64(15+loc.DIMM), u(t, recs[0], "bank"))
	require.Equal(t, uint64(loc.MC), u(t, recs[0], "socketid"))
	require.Equal(t, "mc_event", recs[1].Format.Name)
	require.Zero(t, m.Stats().CECConsumed)

	// The rank: its chip select in MCA_SYND[2:0], the same csrow/channel
	// pair in the mc_event's layers and in the rank's dimm_location, and
	// its counter (not the other rank's) raised.
	require.Equal(t, uint64(loc.CS), u(t, recs[0], "synd"))
	require.Equal(t, uint64(loc.CS), u(t, recs[1], "top_layer"))
	require.Equal(t, uint64(loc.DIMM), u(t, recs[1], "middle_layer"))
	mcDir := m.paths.SysPath("devices/system/edac/mc", fmt.Sprintf("mc%d", loc.MC))
	for cs := 0; cs < 2; cs++ {
		entry, _ := m.Profile().edacEntry(loc.DIMM, cs)
		location, err := os.ReadFile(filepath.Join(mcDir, entry, "dimm_location"))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("csrow %d channel %d \n", cs, loc.DIMM), string(location))
		want := uint64(0)
		if cs == loc.CS {
			want = 1
		}
		count, err := readUint(filepath.Join(mcDir, entry, "dimm_ce_count"))
		require.NoError(t, err)
		require.Equal(t, want, count, "rank %s (chip select %d)", entry, cs)
	}
	// The next MiB of the same DIMM is its other rank.
	other := m.Profile().Locate(addr + uint64(m.Profile().Controllers*m.Profile().DIMMsPerController)<<interleaveShift)
	require.Equal(t, [2]int{loc.MC, loc.DIMM}, [2]int{other.MC, other.DIMM})
	require.Equal(t, 1-loc.CS, other.CS)

	_, err := Profile{CPU: "intel", SMCA: true}.WithDefaults()
	require.ErrorIs(t, err, ErrBadProfile)
}

// A Zen UMC error without a valid MCA_SYND: the record keeps its UMC and
// loses SyndV and the chip select; amd64_edac logs it at csrow 0 of the
// node with no address, on the record's UMC on 6.1 and on channel 0 on
// 6.12, under that entry's own label, and bumps that entry's counter.
func TestMemoryCEZenNoSyndrome(t *testing.T) {
	const addr = 0x2d94040
	for _, kernel := range []string{"6.1", "6.12"} {
		t.Run(kernel, func(t *testing.T) {
			m := testMachine(t, Profile{Kernel: kernel, CPU: "amd", SMCA: true, EDAC: true, RankLabels: true, DIMMsPerController: 2})
			dir := newInstance(t, m, "selfprotect", "mce/mce_record", "ras/mc_event")
			loc := m.Profile().Locate(addr)
			require.NotZero(t, loc.DIMM, "the address must sit on a UMC other than 0 for the kernels to differ")
			require.NoError(t, m.InjectMemoryCENoSyndrome(addr, 1, 1))
			recs := records(t, m, drain(t, dir, 1))
			require.Len(t, recs, 2)
			require.Zero(t, u(t, recs[0], "status")&statusSyndV)
			require.Zero(t, u(t, recs[0], "synd"))
			require.Equal(t, umcIPID(loc.DIMM), u(t, recs[0], "ipid"))

			ch := loc.DIMM
			if kernel == "6.12" {
				ch = 0
			}
			ev := recs[1]
			msg, err := ev.String("msg")
			require.NoError(t, err)
			require.Equal(t, unplacedMsg, msg)
			label, err := ev.String("label")
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("mc#%dcsrow#0channel#%d", loc.MC, ch), label)
			require.Zero(t, u(t, ev, "address"))
			require.Equal(t, uint64(0), u(t, ev, "top_layer"))
			require.Equal(t, uint64(ch), u(t, ev, "middle_layer"))

			mcDir := m.paths.SysPath("devices/system/edac/mc", fmt.Sprintf("mc%d", loc.MC))
			entry, _ := m.Profile().edacEntry(ch, 0)
			got, err := os.ReadFile(filepath.Join(mcDir, entry, "dimm_label"))
			require.NoError(t, err)
			require.Equal(t, label+"\n", string(got))
			count, err := readUint(filepath.Join(mcDir, entry, "dimm_ce_count"))
			require.NoError(t, err)
			require.Equal(t, uint64(1), count)
		})
	}
	m := testMachine(t, Profile{Kernel: "6.12", CPU: "intel", EDAC: true})
	require.ErrorContains(t, m.InjectMemoryCENoSyndrome(addr, 1, 1), "smca")
	_, err := Profile{CPU: "amd", EDAC: true, RankLabels: true}.WithDefaults()
	require.ErrorIs(t, err, ErrBadProfile)
}

// A hard offline runs the kernel's memory-failure handler, which fires
// ras:memory_failure_event; a soft offline does not. The kernel handling a
// UE by itself poisons the page and fires it too.
func TestMemoryFailureEvent(t *testing.T) {
	m := testMachine(t, Profile{Kernel: "6.12", CPU: "intel"})
	dir := newInstance(t, m, "selfprotect", "ras/memory_failure_event")
	require.NoError(t, m.KernelMemoryFailure(0x3c00040))
	recs := records(t, m, drain(t, dir, 0))
	require.Len(t, recs, 1)
	require.Equal(t, uint64(0x3c00), u(t, recs[0], "pfn"))
	require.Equal(t, uint64(mfRecovered), u(t, recs[0], "result"))
	poisoned, err := m.pageFlags(0x3c00)
	require.NoError(t, err)
	require.NotZero(t, poisoned&kpfHWPoison)
	require.Error(t, m.KernelMemoryFailure(uint64(m.Profile().pages())<<pageShift))
}
