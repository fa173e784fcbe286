package replay

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// TestMcelogImport reads testdata/mcelog.log: two corrected memory errors
// on page 0x2d94 an hour apart (Intel bank 7, MISC 0x8c: page-exact
// physical address), a thermal event (skipped: no MCA bank) and, in
// syslog's "mcelog: " form, one L1 data error on CPU 2. Replayed with the
// default policy the page trips (2/24h) and is retired; one cache error is
// far from the CPU rule's 5.
func TestMcelogImport(t *testing.T) {
	f, err := os.Open("testdata/mcelog.log")
	require.NoError(t, err)
	defer f.Close()
	recs, err := ReadMcelog("testdata/mcelog.log", f, "web3")
	require.NoError(t, err)
	require.Len(t, recs, 3)

	mem := recs[0].Event
	require.Equal(t, fault.ClassMemory, mem.Class)
	require.Equal(t, fault.SeverityCorrected, mem.Severity)
	require.True(t, mem.AddrValid)
	require.EqualValues(t, 0x2d94, mem.PFN())
	require.Equal(t, 1, mem.CPU)
	require.Equal(t, 1, recs[0].Line)
	require.Equal(t, "2026-11-25T11:46:32Z", mem.Received.Format("2006-01-02T15:04:05Z07:00"))

	cache := recs[2].Event
	require.Equal(t, fault.ClassCache, cache.Class)
	require.Equal(t, 2, cache.CPU)
	require.Equal(t, 1, cache.CacheLevel)
	require.True(t, cache.CoreBank)

	r, err := New(defaultHost, builtin(t, "selfprotect", "rasdaemon")...)
	require.NoError(t, err)
	require.NoError(t, r.AddRaw("mcelog.log", recs))
	rep := r.Report()
	require.Equal(t, map[string]int{"page": 1}, rep.Policies[0].Cases)
	require.EqualValues(t, 1, rep.Policies[0].PagesRetired)
	// rasdaemon never sees mcelog's records: they are not mc_events.
	require.EqualValues(t, 0, rep.Policies[1].EventsSeen)
}

func TestMcelogBad(t *testing.T) {
	for _, tt := range []struct{ log, want string }{
		{"Hardware event. This is not a software error.\nCPU 1 BANK 7\nSTATUS zz\n", `x.log:3: field "STATUS": want hex, got "zz"`},
		{"Hardware event. This is not a software error.\nCPU 1 BANK 7\nSTATUS 9c00000000000090\n", `x.log:1: field "TIME": machine check block without TIME`},
		{"Hardware event. This is not a software error.\nTIME 5\nSTATUS 1\n", `x.log:1: field "CPU": machine check block without a "CPU n BANK m" line`},
		{"Hardware event. This is not a software error.\nCPU 1 BANK 7\nTIME 5\nCPUID Vendor Cyrix Family 6\n", `x.log:4: field "Vendor": want Intel or AMD, got "Cyrix"`},
	} {
		_, err := ReadMcelog("x.log", strings.NewReader(tt.log), "h")
		require.ErrorContains(t, err, tt.want)
	}
}

func TestCPUIDOf(t *testing.T) {
	require.EqualValues(t, 0x50654, cpuidOf(6, 85, 4))     // Skylake-SP
	require.EqualValues(t, 0xa00f11, cpuidOf(0x19, 1, 1))  // AMD Zen 3
	require.EqualValues(t, 0x60fb1, cpuidOf(0xf, 0x6b, 1)) // QEMU's qemu64 model (kernel lab)
}
