package procmem

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakePagemap marks the given virtual page numbers present.
type fakePagemap map[uint64]bool

func (p fakePagemap) ReadAt(b []byte, off int64) (int, error) {
	var v uint64
	if p[uint64(off)/8] {
		v = 1 << 63
	}
	binary.LittleEndian.PutUint64(b, v)
	return 8, nil
}

func TestResidentBySection(t *testing.T) {
	maps, err := ExeMappings([]byte(`00400000-00403000 r-xp 00000000 00:02 7 /bin/sp
00403000-00405000 r--p 00003000 00:02 7 /bin/sp
00405000-00406000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 00:02 9 /lib/other
`))
	require.NoError(t, err)
	require.Equal(t, []Mapping{{0x400000, 0x403000, 0}, {0x403000, 0x405000, 0x3000}}, maps)
	sections := []Section{{".text", 0x0, 0x2800}, {".rodata", 0x2800, 0x3800}, {".gopclntab", 0x3800, 0x5000}}
	// Pages 0x400 (text), 0x402 (text's end, rodata's start: goes to
	// text), 0x403 (rodata; offset 0x3000) and 0x404 (pclntab).
	present := fakePagemap{0x400: true, 0x402: true, 0x403: true, 0x404: true}
	got, err := ResidentBySection(maps, sections, present, 4096)
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{".text": 8, ".rodata": 4, ".gopclntab": 4}, got)
	require.Equal(t, ".text 0.01, .gopclntab 0.00, .rodata 0.00", FormatSections(got))
}

// The test binary is an ELF executable with the sections a Go binary has.
func TestELFSections(t *testing.T) {
	exe, err := os.ReadFile("/proc/self/exe")
	require.NoError(t, err)
	secs, err := ELFSections(bytes.NewReader(exe))
	require.NoError(t, err)
	names := map[string]bool{}
	for _, s := range secs {
		names[s.Name] = true
		require.Greater(t, s.End, s.Offset, s.Name)
	}
	require.True(t, names[".text"] && names[".gopclntab"] && names[".rodata"], "%v", names)
	require.False(t, names[".bss"], "no file contents")
}
