package procmem

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		file      string
		rss, anon uint64
		parts     []Part
	}{
		// Hand-written: every kind of mapping the daemon has in the guest.
		{"small.smaps", 8880, 4300, []Part{
			{Text, 3000, 0}, {ROData, 1200, 0}, {Data, 200, 120}, {Anon, 4100, 4100},
			{NamedRun, 64, 64}, {Stack, 16, 16}, {BPF, 264, 0}, {OtherFile, 32, 0}, {Kernel, 4, 0},
		}},
		// A static Go binary's own smaps (go1.26, host kernel 6.18): the
		// bss and the runtime's arenas are unnamed anonymous mappings.
		{"go-static.smaps", 2088, 648, []Part{
			{Text, 600, 0}, {ROData, 816, 0}, {Data, 36, 20}, {Anon, 612, 612}, {Stack, 16, 16}, {Kernel, 8, 0},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", tc.file))
			require.NoError(t, err)
			b, err := Parse(raw)
			require.NoError(t, err)
			require.Equal(t, tc.rss, b.RSS)
			require.Equal(t, tc.anon, b.Anon)
			require.Equal(t, tc.parts, b.Parts)
			require.Equal(t, tc.parts[0], b.Part(tc.parts[0].Name))
			require.Equal(t, tc.rss, b.KB()["rss"])
		})
	}
}

func TestParseBad(t *testing.T) {
	for _, tc := range []struct{ name, in, err string }{
		{"empty", "", "no file-backed mapping"},
		{"value before mapping", "Rss: 4 kB\n", "Rss before any mapping"},
		{"bad number", "00400000-00496000 r-xp 00000000 fe:00 1 /x\nRss: x kB\n", "smaps line 2: Rss"},
		{"bad perms", "00400000-00496000 rx 00000000 fe:00 1 /x\n", "bad mapping"},
		{"only anonymous", "00400000-00496000 rw-p 00000000 00:00 0\nRss: 4 kB\n", "no file-backed mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestString(t *testing.T) {
	b := Breakdown{RSS: 2048, Anon: 1024, Parts: []Part{{Text, 1024, 0}, {Anon, 1024, 1024}}}
	require.Equal(t, "RSS 2.0 MiB (anon 1.0, file 1.0): text 1.00, anon 1.00", b.String())
}
