package kernel

import (
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

func TestTraceRecordTimes(t *testing.T) {
	got := TraceRecordTimes([]string{
		"kworker/1:1-58 [001] ..... 7.063934: mce_record: CPU: 1, MCGc/s: 0/0, MC7: 9c00000000000090, IPID: 0000000000000000, ADDR: 0000000007598040, MISC: 000000000000008c",
		"kworker/1:1-40 [001] ..... 14.276527: mce_record: CPU: 1, MCGc/s: 0/0, MC7: 9c00000000000090, IPID: 0000000000000000, ADDR/MISC/SYND: 0000000007598040/000000000000008c/0000000000000000",
		"garbage",
	})
	require.Equal(t, map[uint64][]int64{0x7598040: {7063934, 14276527}}, got)
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
		_ = TraceRecordTimes([]string{s})
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
