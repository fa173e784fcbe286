package ebpfsource

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSweepClock(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 2, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	type step struct {
		at     int    // ms
		do     string // "notice", "swept-grew", "swept-idle", or "" to ask due only
		due    bool   // due at this instant (before do)
		nextMs int    // next afterwards
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"idle waits for the backstop", []step{
			{at: 9_999, due: false, nextMs: 10_000},
			{at: 10_000, due: true, do: "swept-idle", nextMs: 20_000},
		}},
		{"a notice makes the sweep due at once", []step{
			{at: 300, do: "notice", due: false, nextMs: 300},
			{at: 300, due: true, do: "swept-grew", nextMs: 1_300},
		}},
		{"a storm is swept every sweep until the counters stop", []step{
			{at: 300, do: "notice", nextMs: 300},
			{at: 301, due: true, do: "swept-grew", nextMs: 1_301},
			{at: 1_000, due: false, nextMs: 1_301},
			{at: 1_301, due: true, do: "swept-grew", nextMs: 2_301},
			{at: 2_301, due: true, do: "swept-idle", nextMs: 12_301},
		}},
		{"swept when asked, our own sweep falls back a sweep later", []step{
			{at: 300, do: "notice", nextMs: 300},
			{at: 301, due: true, do: "swept-grew", nextMs: 1_301},
			{at: 1_000, due: false, do: "asked-grew", nextMs: 3_000},
			{at: 2_000, due: false, do: "asked-grew", nextMs: 4_000},
			{at: 4_000, due: true, do: "swept-grew", nextMs: 5_000},
			{at: 4_500, due: false, do: "asked-idle", nextMs: 14_500},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newSweepClock(time.Second, 10*time.Second, t0)
			for i, s := range tt.steps {
				now := at(s.at)
				require.Equal(t, s.due, c.due(now), "step %d: due at %d ms", i, s.at)
				switch s.do {
				case "notice":
					c.notice(now)
				case "swept-grew":
					c.swept(now, true, false)
				case "swept-idle":
					c.swept(now, false, false)
				case "asked-grew":
					c.swept(now, true, true)
				case "asked-idle":
					c.swept(now, false, true)
				}
				require.Equal(t, at(s.nextMs), c.next, "step %d: next", i)
			}
		})
	}
}
