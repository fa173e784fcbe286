package sim

import (
	"bufio"
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/tracefs"
)

// listing reads a sysfs-listing.txt: path -> value ("" for directories and
// unreadable files; multi-line values are not needed here).
func listing(t *testing.T, cell string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata/capture", cell, "sysfs-listing.txt"))
	require.NoError(t, err)
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "/sys/") {
			continue
		}
		path, val, _ := strings.Cut(l, " = ")
		path, _, _ = strings.Cut(path, " (read failed")
		out[strings.TrimSuffix(path, "/")] = val
	}
	return out
}

// The names the daemon reads exist in the tree, and where the capture
// shows a value for the same machine shape (4 CPUs, no isolation), the
// simulator writes the same value.
func TestTreeMatchesCapturedListing(t *testing.T) {
	mirrored := regexp.MustCompile(`^/sys/devices/system/(` +
		`cpu/(present|possible|online|offline|isolated|nohz_full|kernel_max|enabled|cpu\d+/online|smt/active)` +
		`|memory/(block_size_bytes|soft_offline_page|hard_offline_page|memory\d+/(online|state|phys_index))` +
		`|machinecheck/machinecheck\d+/(bank\d+|check_interval|cmci_disabled|dont_log_ce|ignore_ce|print_all)` +
		`|edac/mc)$`)
	for _, tc := range []struct{ cell, kernel, cpu string }{{"6.1-amd", "6.1", "amd"}, {"6.12-intel", "6.12", "intel"}} {
		t.Run(tc.cell, func(t *testing.T) {
			m := testMachine(t, Profile{Kernel: tc.kernel, CPU: tc.cpu, MemoryMB: 1024})
			checked := 0
			for path, want := range listing(t, tc.cell) {
				if !mirrored.MatchString(path) {
					continue
				}
				checked++
				local := filepath.Join(m.Dir(), path)
				fi, err := os.Stat(local)
				require.NoError(t, err, path)
				if fi.IsDir() || fi.Mode()&os.ModeNamedPipe != 0 || want == "" {
					continue
				}
				got, err := os.ReadFile(local)
				require.NoError(t, err)
				require.Equal(t, want, strings.TrimSuffix(string(got), "\n"), path)
			}
			require.Greater(t, checked, 60)
			_, err := os.Stat(filepath.Join(m.Dir(), "sys/devices/system/cpu/cpu0/online"))
			require.ErrorIs(t, err, os.ErrNotExist, "cpu0 has no online file")
		})
	}
}

func TestTreeLayout(t *testing.T) {
	m := testMachine(t, Profile{Kernel: "6.12", CPU: "intel", CPUs: 8, ThreadsPerCore: 2, MemoryMB: 512,
		EDAC: true, Controllers: 2, DIMMsPerController: 3, CEC: true, Isolated: []int{3, 2}})
	p := m.Paths()
	read := func(path string) string {
		b, err := os.ReadFile(path)
		require.NoError(t, err, path)
		return string(b)
	}
	require.Equal(t, "2-3\n", read(p.SysPath("devices/system/cpu/isolated")))
	require.Contains(t, read(p.ProcPath("cmdline")), "isolcpus=2-3")
	require.Equal(t, "1,5\n", read(p.SysPath("devices/system/cpu/cpu5/topology/thread_siblings_list")))
	require.Equal(t, "1\n", read(p.SysPath("devices/system/cpu/cpu5/topology/core_id")))
	require.Equal(t, "1\n", read(p.ProcPath("sys/vm/enable_soft_offline")))
	require.Equal(t, "2\n", read(p.DebugPath("ras/cec/action_threshold")))
	require.Equal(t, "CPU_SrcID#0_MC#1_Chan#2_DIMM#0\n", read(p.SysPath("devices/system/edac/mc/mc1/dimm2/dimm_label")))
	require.Equal(t, "0\n", read(p.SysPath("devices/system/edac/mc/mc1/dimm2/dimm_ce_count")))
	require.Contains(t, read(p.ProcPath("meminfo")), "HardwareCorrupted:     0 kB\n")

	for _, f := range []string{"soft_offline_page", "hard_offline_page"} {
		fi, err := os.Stat(p.SysPath("devices/system/memory", f))
		require.NoError(t, err)
		require.NotZero(t, fi.Mode()&os.ModeNamedPipe, f)
	}
	fi, err := os.Stat(p.ProcPath("kpageflags"))
	require.NoError(t, err)
	require.Equal(t, int64(512<<8)*8, fi.Size())
	ents, err := os.ReadDir(p.Dev)
	require.NoError(t, err)
	require.Empty(t, ents)

	// Every format file is the captured one and parses; ids match.
	for name, ev := range m.events {
		raw := read(p.TracingPath("events", name, "format"))
		require.Equal(t, string(ev.raw), raw)
		_, err := tracefs.ParseFormat(name, ev.system, []byte(raw))
		require.NoError(t, err)
	}
	require.Len(t, m.events, 7)
	require.Equal(t, "113\n", read(p.TracingPath("events/mce/mce_record/id")))
	require.Equal(t, "1351\n", read(p.TracingPath("events/ras/mc_event/id")))
}

func TestTreeWithoutEDACHasEmptyMC(t *testing.T) {
	m := testMachine(t, Profile{Kernel: "6.1", CPU: "amd"})
	ents, err := os.ReadDir(m.Paths().SysPath("devices/system/edac/mc"))
	require.NoError(t, err)
	require.Empty(t, ents)
	_, err = os.Stat(m.Paths().ProcPath("sys/vm/enable_soft_offline"))
	require.ErrorIs(t, err, os.ErrNotExist, "6.1 predates enable_soft_offline")
	_, err = os.Stat(m.Paths().DebugPath("ras/cec"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestBuildRejectsBadProfiles(t *testing.T) {
	for _, p := range []Profile{
		{Kernel: "5.10"}, {CPU: "arm"}, {CPUs: -1}, {MemoryMB: 1}, {Kernel: "6.1", CEC: true},
		{Controllers: 2}, {Isolated: []int{4}}, {Isolated: []int{1, 1}}, {CPUs: 3, ThreadsPerCore: 2},
	} {
		_, err := Build(t.TempDir(), p)
		require.ErrorIs(t, err, ErrBadProfile, "%+v", p)
	}
	dir := t.TempDir()
	m, err := Build(dir, Profile{})
	require.NoError(t, err)
	defer m.Close()
	_, err = Build(dir, Profile{})
	require.Error(t, err, "a second Build over a tree")
}

func pageFlagsAt(t *testing.T, m *Machine, pfn uint64) uint64 {
	t.Helper()
	f, err := os.Open(m.Paths().ProcPath("kpageflags"))
	require.NoError(t, err)
	defer f.Close()
	var b [8]byte
	_, err = f.ReadAt(b[:], int64(pfn*8))
	require.NoError(t, err)
	return binary.LittleEndian.Uint64(b[:])
}

func readFileBytes(path string) ([]byte, error) { return os.ReadFile(path) }
