package edac

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

const U = fault.Unknown

func TestReadControllersFixtures(t *testing.T) {
	type dimmWant struct {
		index  int
		kind   string
		label  string
		layers [3]int
		ce, ue uint64
	}
	tests := []struct {
		fixture string
		names   []string
		ce      []uint64
		dimms   map[int][]dimmWant // per controller index
	}{
		{
			fixture: "skx",
			names:   []string{"Skylake Socket#0 IMC#0", "Skylake Socket#0 IMC#1"},
			ce:      []uint64{7, 1},
			dimms: map[int][]dimmWant{
				0: {
					{0, "dimm", "CPU_SrcID#0_MC#0_Chan#0_DIMM#0", [3]int{0, 0, U}, 5, 0},
					{2, "dimm", "CPU_SrcID#0_MC#0_Chan#1_DIMM#0", [3]int{1, 0, U}, 2, 0},
					{4, "dimm", "CPU_SrcID#0_MC#0_Chan#2_DIMM#0", [3]int{2, 0, U}, 0, 0},
				},
				1: {
					{0, "dimm", "CPU_SrcID#0_MC#1_Chan#0_DIMM#0", [3]int{0, 0, U}, 1, 0},
					{2, "dimm", "CPU_SrcID#0_MC#1_Chan#1_DIMM#0", [3]int{1, 0, U}, 0, 0},
				},
			},
		},
		{
			fixture: "ghes",
			names:   []string{"ghes_edac", "ghes_edac"},
			ce:      []uint64{2, 4},
			dimms: map[int][]dimmWant{
				1: {
					{0, "dimm", "N1 DIMM_I0", [3]int{0, U, U}, 1, 0},
					{1, "dimm", "N1 DIMM_J0", [3]int{1, U, U}, 0, 0},
					{2, "dimm", "N1 DIMM_K0", [3]int{2, U, U}, 0, 0},
					{3, "dimm", "N1 DIMM_L0", [3]int{3, U, U}, 1, 0},
				},
			},
		},
		{
			fixture: "amd64",
			names:   []string{"F17h"},
			ce:      []uint64{3},
			dimms: map[int][]dimmWant{
				0: {
					{0, "rank", "mc#0csrow#0channel#0", [3]int{0, 0, U}, 3, 0},
					{1, "rank", "mc#0csrow#0channel#1", [3]int{0, 1, U}, 0, 0},
					{2, "rank", "", [3]int{1, 0, U}, 0, 0},
				},
			},
		},
		{
			fixture: "csrow",
			names:   []string{"I5000"},
			ce:      []uint64{4},
			dimms:   map[int][]dimmWant{0: nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			ctrls, err := ReadControllers(kpath.Under("testdata/"+tt.fixture), kpath.OS{})
			require.NoError(t, err)
			require.Len(t, ctrls, len(tt.names))
			for i, c := range ctrls {
				require.Equal(t, i, c.Index)
				require.Equal(t, tt.names[i], c.Name)
				require.Equal(t, tt.ce[i], c.CE)
				require.Empty(t, c.Errs)
			}
			for mc, want := range tt.dimms {
				got := ctrls[mc].DIMMs
				require.Len(t, got, len(want))
				for i, w := range want {
					d := got[i]
					require.Equal(t, w.index, d.Index)
					require.Equal(t, w.kind, d.Kind)
					require.Equal(t, w.label, d.Label)
					require.Equal(t, w.layers, d.Layers)
					require.Equal(t, w.ce, d.CE)
					require.Equal(t, w.ue, d.UE)
					require.Empty(t, d.Errs)
				}
			}
		})
	}
}

func TestReadControllersDIMMAttributes(t *testing.T) {
	ctrls, err := ReadControllers(kpath.Under("testdata/skx"), kpath.OS{})
	require.NoError(t, err)
	d := ctrls[0].DIMMs[1]
	require.Equal(t, "channel 1 slot 0", d.Location)
	require.Equal(t, "Registered-DDR4", d.MemType)
	require.Equal(t, "SECDED", d.EdacMode)
	require.Equal(t, "x4", d.DevType)
	require.Equal(t, uint64(16384), d.SizeMB)
	c := ctrls[1]
	require.Equal(t, uint64(32768), c.SizeMB)
	require.Equal(t, uint64(1), c.UE)
	require.Equal(t, uint64(1), c.UENoInfo)
	require.Equal(t, uint64(0), c.CENoInfo)
	require.Equal(t, uint64(86400), c.SecondsSinceReset)
}

func TestReadControllersLegacyCSRows(t *testing.T) {
	ctrls, err := ReadControllers(kpath.Under("testdata/csrow"), kpath.OS{})
	require.NoError(t, err)
	require.Empty(t, ctrls[0].DIMMs)
	rows := ctrls[0].CSRows
	require.Len(t, rows, 2)
	require.Equal(t, CSRow{
		Index: 0, CE: 3, UE: 1, SizeMB: 4096, MemType: "FullyBuffered-DDR2", EdacMode: "S8ECD8ED",
		Channels: []Channel{{Index: 0, Label: "DIMM_A1", CE: 2}, {Index: 1, Label: "DIMM_B1", CE: 1}},
	}, rows[0])
	require.Equal(t, []Channel{{Index: 0, Label: "DIMM_A2", CE: 0}, {Index: 1, Label: "", CE: 1}}, rows[1].Channels)
}

func TestReadControllersNoEDAC(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"no edac dir", func(t *testing.T, dir string) {}},
		{"empty mc dir", func(t *testing.T, dir string) {
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "sys/devices/system/edac/mc/power"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "sys/devices/system/edac/mc/uevent"), nil, 0o644))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			ctrls, err := ReadControllers(kpath.Under(dir), kpath.OS{})
			require.ErrorIs(t, err, ErrNoEDAC)
			require.Nil(t, ctrls)
		})
	}
}

func TestReadControllersUnreadableFiles(t *testing.T) {
	fsys := failFS{fail: map[string]error{
		"mc0/dimm2/dimm_ce_count": syscall.EIO,
		"mc1/ce_noinfo_count":     syscall.EACCES,
	}}
	ctrls, err := ReadControllers(kpath.Under("testdata/skx"), fsys)
	require.Error(t, err)
	require.ErrorIs(t, err, syscall.EIO)
	require.ErrorIs(t, err, fs.ErrPermission)
	require.Len(t, ctrls, 2, "one bad file must not hide the controllers")

	bad := ctrls[0].DIMMs[1]
	require.Len(t, bad.Errs, 1)
	var fe *FileError
	require.True(t, errors.As(bad.Errs[0], &fe))
	require.Equal(t, "reading", fe.Op)
	require.Equal(t, "dimm_ce_count", filepath.Base(fe.Path))
	require.Equal(t, uint64(0), bad.CE)
	require.Equal(t, "CPU_SrcID#0_MC#0_Chan#1_DIMM#0", bad.Label, "the other files of that DIMM are still read")
	require.Empty(t, ctrls[0].DIMMs[0].Errs)

	require.Len(t, ctrls[1].Errs, 1)
	require.ErrorIs(t, ctrls[1].Errs[0], syscall.EACCES)
	require.Equal(t, uint64(1), ctrls[1].UENoInfo)
}

func TestReadControllersMalformedCounter(t *testing.T) {
	p, dir := copyFixture(t, "skx")
	writeAttr(t, dir, "mc0/dimm0/dimm_ce_count", "-3")
	ctrls, err := ReadControllers(p, kpath.OS{})
	require.ErrorContains(t, err, "not an unsigned decimal")
	var fe *FileError
	require.True(t, errors.As(ctrls[0].DIMMs[0].Errs[0], &fe))
	require.Equal(t, "parsing", fe.Op)
}

func TestReadControllersUnlistableController(t *testing.T) {
	fsys := failFS{fail: map[string]error{"edac/mc/mc1": syscall.EIO}}
	ctrls, err := ReadControllers(kpath.Under("testdata/skx"), fsys)
	require.ErrorIs(t, err, syscall.EIO)
	require.Len(t, ctrls, 1)
	require.Equal(t, 0, ctrls[0].Index)

	fsys = failFS{fail: map[string]error{"edac/mc": syscall.EACCES}}
	_, err = ReadControllers(kpath.Under("testdata/skx"), fsys)
	require.ErrorIs(t, err, syscall.EACCES)
	require.NotErrorIs(t, err, ErrNoEDAC)
}

func TestParseCounter(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"0\n", 0, false},
		{"17\n", 17, false},
		{" 4294967295 \n", 4294967295, false},
		{"", 0, true},
		{"\n", 0, true},
		{"-1\n", 0, true},
		{"0x10\n", 0, true},
		{"12 apples", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseCounter(tt.in)
		if tt.wantErr {
			require.Error(t, err, "%q", tt.in)
			continue
		}
		require.NoError(t, err, "%q", tt.in)
		require.Equal(t, tt.want, got)
	}
}

func TestParseLocation(t *testing.T) {
	tests := []struct {
		in      string
		want    [3]int
		names   []string
		wantErr string
	}{
		{"csrow 0 channel 1 \n", [3]int{0, 1, U}, []string{"csrow", "channel"}, ""},
		{"memory 3 ", [3]int{3, U, U}, []string{"memory"}, ""},
		{"branch 1 channel 0 slot 2", [3]int{1, 0, 2}, []string{"branch", "channel", "slot"}, ""},
		{"", [3]int{}, nil, "empty"},
		{"csrow", [3]int{}, nil, "pairs"},
		{"csrow x", [3]int{}, nil, "not a small number"},
		{"csrow -1", [3]int{}, nil, "not a small number"},
		{"0 1", [3]int{}, nil, "not a layer name"},
		{"a 1 b 2 c 3 d 4", [3]int{}, nil, "at most 3"},
	}
	for _, tt := range tests {
		layers, err := ParseLocation(tt.in)
		if tt.wantErr != "" {
			require.ErrorContains(t, err, tt.wantErr, "%q", tt.in)
			continue
		}
		require.NoError(t, err, "%q", tt.in)
		require.Equal(t, tt.want, LayerIndexes(layers))
		var names []string
		for _, l := range layers {
			names = append(names, l.Name)
		}
		require.Equal(t, tt.names, names)
	}
}

func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{"csrow 0 channel 1 \n", "memory 3 ", "branch 1 channel 0 slot 2", "", "x 99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		layers, err := ParseLocation(s)
		if err != nil {
			return
		}
		require.LessOrEqual(t, len(layers), 3)
		for _, l := range layers {
			require.GreaterOrEqual(t, l.Index, 0)
		}
	})
}

func FuzzParseCounter(f *testing.F) {
	for _, s := range []string{"0\n", "17", "-1", "", "18446744073709551615", "18446744073709551616"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseCounter(s)
	})
}

// FuzzReadControllers writes fuzzed text into a DIMM's counter and location
// files and checks the reader reports, never panics, and keeps the DIMM.
func FuzzReadControllers(f *testing.F) {
	f.Add("5\n", "channel 0 slot 0 \n", "CPU_SrcID#0_MC#0_Chan#0_DIMM#0\n")
	f.Add("", "", "")
	f.Add("-1", "memory", "\x00")
	dir := f.TempDir()
	require.NoError(f, os.CopyFS(dir, os.DirFS("testdata/skx")))
	base := filepath.Join(dir, "sys/devices/system/edac/mc/mc0/dimm0")
	f.Fuzz(func(t *testing.T, count, location, label string) {
		require.NoError(t, os.WriteFile(filepath.Join(base, "dimm_ce_count"), []byte(count), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(base, "dimm_location"), []byte(location), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(base, "dimm_label"), []byte(label), 0o644))
		ctrls, _ := ReadControllers(kpath.Under(dir), kpath.OS{})
		require.Len(t, ctrls, 2)
		require.Len(t, ctrls[0].DIMMs, 3)
	})
}
