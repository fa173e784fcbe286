package kernel

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDaemonLog(t *testing.T) {
	console := "[   5.1] x\n[daemon] 1200 time=\"t\" level=debug msg=\"hardware error\" event=\"corrected memory x1 addr=0x3040\"\r\n" +
		"[daemon] 1500 level=warning msg=\"diagnosed: page\"\n[daemon] oops no stamp\n[daemon] 1900 outcome=isolated resource=page:0x3\n"
	lines := DaemonLog(console)
	require.Len(t, lines, 3)
	require.Equal(t, int64(1200), FirstAfter(lines, 0, "hardware error", "addr=0x3040"))
	require.Equal(t, int64(1500), FirstAfter(lines, 1201, "diagnosed:"))
	require.Equal(t, int64(1900), FirstAfter(lines, 0, "outcome=", "page:0x3"))
	require.Equal(t, int64(-1), FirstAfter(lines, 2000, "outcome="))
}

// TestKernelTimelines reads testdata/latency-trace.txt, the lines of
// two latency sections' trace instances from 6.12 guests (Intel model): a
// page CEC offlined from its kworker; three the daemon offlined, one of
// them (0x4b4c040) before the bench's instance took its record. The last
// two pages are edited copies of real lines: an offline that failed
// (EBUSY), and a page never offlined. They are read reversed, with
// garbage: order comes from the stamps.
func TestKernelTimelines(t *testing.T) {
	raw, err := os.ReadFile("testdata/latency-trace.txt")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	slices.Reverse(lines)
	got := KernelTimelines(append(lines, "garbage", "", "guest-1 [001] ..... 1.000000: tracing_mark_write: selfprotect-inject addr="))
	require.Equal(t, []KernelTimeline{
		{Addr: 0x2bdd040, Marked: 3315924, Recorded: 3327799, Entered: 3328548, Returned: 3341965},
		{Addr: 0x4b4b040, Marked: 24090290, Recorded: 24091537, Entered: 24097724, Returned: 24099129},
		{Addr: 0x4b4c040, Marked: 24835198, Recorded: 24845237, Entered: 24838750, Returned: 24839274},
		{Addr: 0x4b4d040, Marked: 25571480, Recorded: 25574290, Entered: 25584578, Returned: 25585100, Ret: -16},
		{Addr: 0x4b4e040, Marked: 26350547, Recorded: 26355279},
	}, got)
	require.True(t, got[2].Offlined())
	require.False(t, got[4].Offlined())
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}}
	for _, tc := range tests {
		require.Equal(t, tc.want, Median(tc.in))
	}
}

func FuzzDaemonLog(f *testing.F) {
	f.Add("[daemon] 12 x\n[daemon] y\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, l := range DaemonLog(s) {
			require.GreaterOrEqual(t, l.MonoUS, int64(0))
		}
		_ = KernelTimelines([]string{s})
	})
}

func TestDecisionTimingLineFields(t *testing.T) {
	line := `time="t" level=debug msg="decision timing" case=c1 isolate_ms=12.5 received_mono_us=123456 suspect="page:0x3040" total_ms=40.25`
	tests := []struct {
		key  string
		want float64
	}{{"received_mono_us", 123456}, {"total_ms", 40.25}, {"isolate", -1}, {"missing_ms", -1}}
	for _, tt := range tests {
		require.Equal(t, tt.want, logNumber(line, tt.key), tt.key)
	}
	require.True(t, fieldIs(line, "suspect", "page:0x3040"))
	require.True(t, fieldIs(`suspect=page:0x3040 x=1`, "suspect", "page:0x3040"), "unquoted")
	require.False(t, fieldIs(line, "suspect", "page:0x304"), "a prefix of the page is another page")
	require.False(t, fieldIs(`resource="page:0x3040"`, "suspect", "page:0x3040"), "only the named field")
}
