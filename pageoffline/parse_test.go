package pageoffline

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseMemInfoCaptures(t *testing.T) {
	tests := []struct {
		file    string
		total   uint64
		corrupt uint64
	}{
		{"meminfo-6.1-amd.txt", 983000, 0},
		{"meminfo-6.12-intel.txt", 989956, 0},
		{"meminfo-6.12-intel-end.txt", 989956, 8},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			require.NoError(t, err)
			m, err := ParseMemInfo(data)
			require.NoError(t, err)
			require.Equal(t, MemInfo{TotalKB: tt.total, HardwareCorruptedKB: tt.corrupt, HasHardwareCorrupted: true}, m)
		})
	}
}

func TestParseMemInfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    MemInfo
		wantErr string
	}{
		{name: "no HardwareCorrupted line", in: "MemTotal: 100 kB\nMemFree: 5 kB\n", want: MemInfo{TotalKB: 100}},
		{name: "empty", in: "", wantErr: "no MemTotal"},
		{name: "bad unit", in: "MemTotal: 100 MB\n", wantErr: "line 1 (MemTotal)"},
		{name: "bad number", in: "MemTotal: 1 kB\nHardwareCorrupted: -4 kB\n", wantErr: "line 2 (HardwareCorrupted)"},
		{name: "unneeded garbage skipped", in: "junk\nHugePages_Total: 0\nMemTotal: 7 kB\n", want: MemInfo{TotalKB: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMemInfo([]byte(tt.in))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, m)
		})
	}
}

func TestReadMemInfoErrors(t *testing.T) {
	k := newFakeKernel(t)
	k.fs.ReadErrs[testPaths.ProcPath("meminfo")] = syscall.EIO
	_, err := ReadMemInfo(testPaths, k.fs)
	require.ErrorIs(t, err, syscall.EIO)
	require.ErrorContains(t, err, "/fake/proc/meminfo")
}

func TestPageFlags(t *testing.T) {
	// The soft-offlined page of the 6.12 Intel capture, before and after.
	before, err := ParsePageFlags([]byte{0x28, 0x58, 0x20, 0x00, 0x04, 0x00, 0x00, 0x00})
	require.NoError(t, err)
	require.Equal(t, PageFlags(flagsBefore), before)
	require.False(t, before.HWPoison())
	after, err := ParsePageFlags([]byte{0x18, 0x50, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00})
	require.NoError(t, err)
	require.True(t, after.HWPoison())
	require.Equal(t, "0x285018 (hwpoison)", after.String())
	// A free buddy page, then hard-offlined.
	require.True(t, PageFlags(0x400).Buddy())
	require.Equal(t, "0x80000 (hwpoison)", PageFlags(0x80000).String())
	require.Equal(t, "0x20000 (huge)", PageFlags(1<<KPFHuge).String())
	require.True(t, PageFlags(1<<KPFTHP).THP())

	_, err = ParsePageFlags([]byte{1, 2, 3})
	require.ErrorContains(t, err, "want 8 bytes, got 3")
}

func TestPoisoned(t *testing.T) {
	k := newFakeKernel(t)
	tests := []struct {
		pfn     uint64
		want    bool
		wantErr error
	}{
		{pfn: testPFN, want: false},
		{pfn: poisonedPFN, want: true},
		{pfn: fakeMemoryPFNs, wantErr: ErrPFNOutOfRange},
		{pfn: MaxPFN + 1, wantErr: ErrPFNOutOfRange},
		{pfn: 1<<64 - 1, wantErr: ErrPFNOutOfRange},
	}
	for _, tt := range tests {
		got, err := Poisoned(testPaths, k.fs, tt.pfn)
		if tt.wantErr != nil {
			require.ErrorIs(t, err, tt.wantErr, "pfn %#x", tt.pfn)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.want, got, "pfn %#x", tt.pfn)
	}
}

func FuzzParseMemInfo(f *testing.F) {
	for _, name := range []string{"meminfo-6.1-amd.txt", "meminfo-6.12-intel-end.txt"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte("MemTotal: 1 kB\nHardwareCorrupted: 18446744073709551615 kB\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMemInfo(data)
		if err == nil && !bytes.Contains(data, []byte("MemTotal")) {
			t.Fatalf("parsed %+v without a MemTotal line", m)
		}
	})
}

// FuzzReadPageFlags runs the kpageflags reader over arbitrary file contents
// and PFNs: it must return flags or an error, never panic.
func FuzzReadPageFlags(f *testing.F) {
	f.Add([]byte{0x18, 0x50, 0x28, 0, 0, 0, 0, 0}, uint64(0))
	f.Add([]byte{1, 2, 3}, uint64(0))
	f.Add(make([]byte, 64), uint64(7))
	f.Add(make([]byte, 64), uint64(1<<63))
	f.Fuzz(func(t *testing.T, data []byte, pfn uint64) {
		fs := newFakeFS()
		fs.Set(testPaths.ProcPath("kpageflags"), string(data))
		flags, err := ReadPageFlags(testPaths, fs, pfn)
		if err != nil {
			return
		}
		off := pfn * 8
		if want := binary.LittleEndian.Uint64(data[off : off+8]); uint64(flags) != want {
			t.Fatalf("pfn %d: got %#x want %#x", pfn, flags, want)
		}
	})
}
