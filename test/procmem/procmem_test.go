package procmem

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		file            string
		rss, anon, huge uint64
		parts           []Part
	}{
		// Hand-written: every kind of mapping the daemon has in the guest.
		{"small.smaps", 8880, 4300, 2048, []Part{
			{Name: Text, RSS: 3000}, {Name: ROData, RSS: 1200}, {Name: Data, RSS: 200, Anon: 120},
			{Name: Anon, RSS: 4100, Anon: 4100, Huge: 2048},
			{Name: NamedRun, RSS: 64, Anon: 64}, {Name: Stack, RSS: 16, Anon: 16}, {Name: BPF, RSS: 264},
			{Name: OtherFile, RSS: 32}, {Name: Kernel, RSS: 4},
		}},
		// A static Go binary's own smaps (go1.26, host kernel 6.18): the
		// bss, the heap and the runtime's mappings are unnamed.
		{"go-static.smaps", 2088, 648, 0, []Part{
			{Name: Text, RSS: 600}, {Name: ROData, RSS: 816}, {Name: Data, RSS: 36, Anon: 20},
			{Name: Anon, RSS: 612, Anon: 612},
			{Name: Stack, RSS: 16, Anon: 16}, {Name: Kernel, RSS: 8},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", tc.file))
			require.NoError(t, err)
			b, err := Parse(raw)
			require.NoError(t, err)
			require.Equal(t, tc.rss, b.RSS)
			require.Equal(t, tc.anon, b.Anon)
			require.Equal(t, tc.huge, b.Huge)
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
	b := Breakdown{RSS: 2048, Anon: 1024, Parts: []Part{{Name: Text, RSS: 1024}, {Name: Anon, RSS: 1024, Anon: 1024}}}
	require.Equal(t, "RSS 2.0 MiB (anon 1.0, file 1.0, huge pages 0.0): text 1.00, anon 1.00", b.String())
}
