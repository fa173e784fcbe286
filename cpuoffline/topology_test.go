package cpuoffline

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/kpath"
)

func TestReadTopologyKernelCaptures(t *testing.T) {
	for _, cell := range []string{"6.1-amd", "6.12-intel"} {
		t.Run(cell, func(t *testing.T) {
			root := t.TempDir()
			treeFromListing(t, filepath.Join("testdata", "sysfs-cpu-"+cell+".txt"), root)
			p := kpath.Under(root)

			topo, err := ReadTopology(p, kpath.OS{})

			require.NoError(t, err)
			require.Equal(t, []int{0, 1, 2, 3}, topo.Present)
			require.Equal(t, []int{0, 1, 2, 3}, topo.Online)
			require.Empty(t, topo.Offline)
			require.Equal(t, []int{0, 1, 2, 3}, topo.Possible)
			require.Empty(t, topo.Isolated, "empty isolated and nohz_full=(null)")
			require.Equal(t, map[int]bool{0: true}, topo.NoOnlineFile)
			require.Equal(t, map[int][]int{0: {0}, 1: {1}, 2: {2}, 3: {3}}, topo.Siblings)
		})
	}
}

// smtTree writes an 8-thread, 4-core machine with cpu5 offline.
func smtTree(t *testing.T, cmdline string, extra map[string]string) kpath.Paths {
	t.Helper()
	root := t.TempDir()
	p := kpath.Under(root)
	files := map[string]string{
		p.SysPath("devices/system/cpu/present"):   "0-7\n",
		p.SysPath("devices/system/cpu/possible"):  "0-7\n",
		p.SysPath("devices/system/cpu/online"):    "0-4,6-7\n",
		p.SysPath("devices/system/cpu/offline"):   "5\n",
		p.SysPath("devices/system/cpu/isolated"):  "\n",
		p.SysPath("devices/system/cpu/nohz_full"): "(null)\n",
		p.ProcPath("cmdline"):                     cmdline + "\n",
	}
	for c := 0; c < 8; c++ {
		dir := p.SysPath("devices/system/cpu", "cpu"+itoa(c))
		if c != 0 {
			files[filepath.Join(dir, "online")] = map[bool]string{true: "0\n", false: "1\n"}[c == 5]
		}
		if c != 5 { // an offline CPU without topology files falls back to itself
			files[filepath.Join(dir, "topology/thread_siblings_list")] = itoa(c%4) + "," + itoa(c%4+4) + "\n"
		}
	}
	for k, v := range extra {
		files[p.SysPath(k)] = v
	}
	for path, content := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
	return p
}

func itoa(n int) string { return FormatCPUList([]int{n}) }

func TestReadTopologySMTAndIsolation(t *testing.T) {
	tests := []struct {
		name     string
		cmdline  string
		extra    map[string]string
		isolated []int
	}{
		{name: "nothing isolated", cmdline: "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet"},
		{name: "isolcpus with flags", cmdline: "quiet isolcpus=domain,managed_irq,2-3 ro", isolated: []int{2, 3}},
		{name: "isolcpus plain and nohz_full", cmdline: "isolcpus=1 nohz_full=6-N", isolated: []int{1, 6, 7}},
		{
			name: "sysfs lists", cmdline: "quiet",
			extra:    map[string]string{"devices/system/cpu/isolated": "4\n", "devices/system/cpu/nohz_full": "7\n"},
			isolated: []int{4, 7},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := smtTree(t, tt.cmdline, tt.extra)
			topo, err := ReadTopology(p, kpath.OS{})
			require.NoError(t, err)
			require.Equal(t, []int{0, 1, 2, 3, 4, 6, 7}, topo.Online)
			require.Equal(t, []int{5}, topo.Offline)
			require.Equal(t, tt.isolated, topo.Isolated)
			require.Equal(t, map[int]bool{0: true}, topo.NoOnlineFile)
			require.Equal(t, []int{0, 4}, topo.Siblings[0])
			require.Equal(t, []int{3, 7}, topo.Siblings[7])
			require.Equal(t, []int{5}, topo.Siblings[5])
			require.False(t, topo.IsOnline(5))
			require.True(t, topo.IsOnline(7))
		})
	}
}

func TestReadTopologyErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fakeFS)
		want  string
	}{
		{name: "present missing", setup: func(f *fakeFS) { delete(f.Files, testPaths.SysPath("devices/system/cpu/present")) }, want: "present"},
		{name: "online unreadable", setup: func(f *fakeFS) { f.ReadErrs[testPaths.SysPath("devices/system/cpu/online")] = syscall.EIO }, want: "input/output error"},
		{name: "bad list", setup: func(f *fakeFS) { f.Set(testPaths.SysPath("devices/system/cpu/possible"), "0-x") }, want: "parsing"},
		{name: "bad cmdline", setup: func(f *fakeFS) { f.Set(testPaths.ProcPath("cmdline"), "isolcpus=3-1") }, want: "isolcpus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fourCPUs()
			f.Set(testPaths.SysPath("devices/system/cpu/present"), "0-3\n")
			f.Set(testPaths.SysPath("devices/system/cpu/online"), "0-3\n")
			tt.setup(f)
			_, err := ReadTopology(testPaths, f)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// ReadPresentOnline agrees with ReadTopology on its two lists and fails as
// it does when either is missing or unreadable.
func TestReadPresentOnline(t *testing.T) {
	p := smtTree(t, "", nil)
	topo, err := ReadTopology(p, kpath.OS{})
	require.NoError(t, err)
	present, online, err := ReadPresentOnline(p, kpath.OS{})
	require.NoError(t, err)
	require.Equal(t, topo.Present, present)
	require.Equal(t, []int{0, 1, 2, 3, 4, 6, 7}, online)

	for name, setup := range map[string]func(f *fakeFS){
		"present missing":   func(f *fakeFS) { delete(f.Files, testPaths.SysPath("devices/system/cpu/present")) },
		"online unreadable": func(f *fakeFS) { f.ReadErrs[testPaths.SysPath("devices/system/cpu/online")] = syscall.EIO },
	} {
		t.Run(name, func(t *testing.T) {
			f := fourCPUs()
			f.Set(testPaths.SysPath("devices/system/cpu/present"), "0-3\n")
			f.Set(testPaths.SysPath("devices/system/cpu/online"), "0-3\n")
			setup(f)
			_, _, err := ReadPresentOnline(testPaths, f)
			require.Error(t, err)
		})
	}
}
