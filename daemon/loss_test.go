package daemon

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/tracefs"
)

// A source's loss is a problem from the check that first sees it until
// lossQuiet after it last grew; new loss opens it again, and a counter
// reset (new instance) is a new baseline.
func TestRecentLossClearsAfterQuiet(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	steps := []struct {
		at    time.Duration
		total uint64
		want  bool
	}{
		{0, 0, false},                // nothing lost
		{15 * time.Second, 12, true}, // first loss
		{5 * time.Minute, 12, true},  // no new loss yet, still recent
		{15*time.Second + lossQuiet - time.Nanosecond, 12, true},
		{15*time.Second + lossQuiet, 12, false}, // quiet long enough: cleared
		{20 * time.Minute, 12, false},
		{21 * time.Minute, 13, true}, // new loss opens it again
		{21*time.Minute + lossQuiet, 13, false},
		{40 * time.Minute, 3, false}, // reset: a new baseline, not loss
		{41 * time.Minute, 4, true},  // growth after the reset
	}
	var l recentLoss
	for i, s := range steps {
		require.Equal(t, s.want, l.recent(s.total, t0.Add(s.at)), "step %d (%s, total %d)", i, s.at, s.total)
	}
}

func TestTraceProblemsDropOldLossOnly(t *testing.T) {
	h := tracefs.Health{
		Blind: []string{"tracing_on is 0 in instance selfprotect"},
		Lossy: []string{"cpu0: cannot read ring buffer stats: x", "cpu1: 12 events overrun", "cpu3: 4 events dropped"},
		Lost:  []string{"cpu1: 12 events overrun", "cpu3: 4 events dropped"},
	}
	blind := problem{kind: alert.SourceBlind, text: "tracing_on is 0 in instance selfprotect"}
	unreadable := problem{kind: alert.SourceDegraded, text: "cpu0: cannot read ring buffer stats: x"}
	tests := []struct {
		name   string
		recent bool
		want   []problem
	}{
		{"recent loss", true, []problem{blind, unreadable,
			{kind: alert.SourceDegraded, text: "cpu1: 12 events overrun"}, {kind: alert.SourceDegraded, text: "cpu3: 4 events dropped"}}},
		{"old loss", false, []problem{blind, unreadable}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, traceProblems(h, tc.recent))
		})
	}
}

func TestEBPFProblemsDropOldLoss(t *testing.T) {
	require.Nil(t, ebpfProblems(0, false))
	require.Nil(t, ebpfProblems(7, false))
	require.Equal(t, []problem{{kind: alert.SourceDegraded, text: "eBPF probes lost 7 records (ring buffer and aggregation map both full)"}},
		ebpfProblems(7, true))
}
