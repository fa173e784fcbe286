package policy

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// hotView renders Hottest as "rule resource count/threshold" lines.
func hotView(e *Engine) []string {
	var out []string
	for _, h := range e.Hottest() {
		out = append(out, fmt.Sprintf("%s %s %d/%d", h.Rule, h.Resource, h.Count, h.Threshold))
	}
	return out
}

func TestHottest(t *testing.T) {
	const day = 24 * time.Hour
	// Page i (1..7) gets i errors: threshold 10 keeps every page below it.
	sevenPages := func(e *Engine) {
		for i := uint64(1); i <= 7; i++ {
			for j := uint64(0); j < i; j++ {
				e.Observe(memCE(time.Duration(i*10+j)*time.Second, 0x100+i))
			}
		}
	}
	tests := []struct {
		name   string
		config func(*Config)
		feed   func(*Engine)
		want   []string
	}{
		{"only the five hottest pages, hottest first", func(c *Config) { c.Rules.Page.Threshold = 10 }, sevenPages, []string{
			"page page:0x107 7/10", "page page:0x106 6/10", "page page:0x105 5/10", "page page:0x104 4/10", "page page:0x103 3/10",
		}},
		{"a cooler page takes the place of pages whose errors left the window", func(c *Config) { c.Rules.Page.Threshold = 10 }, func(e *Engine) {
			sevenPages(e)
			e.Observe(memCE(2*day, 0x200))
		}, []string{"page page:0x200 1/10"}},
		{"a tripped page leaves the list (its case holds it)", nil, func(e *Engine) {
			e.Observe(memCE(0, 0x300))
			e.Observe(memCE(time.Second, 0x301))
			e.Observe(memCE(2*time.Second, 0x300))
		}, []string{"page page:0x301 1/2"}},
		{"DIMM errors and pages, rows, CPUs and shared caches", nil, func(e *Engine) {
			e.Observe(edacCE(0, "DIMM_B2", 7))
			e.Observe(rowCE(time.Second, "r1", 0x400))
			e.Observe(rowCE(2*time.Second, "r1", 0x401))
			e.Observe(cacheCE(3*time.Second, 3, 1, true))
			e.Observe(cacheCE(4*time.Second, 2, 3, false))
		}, []string{
			"cache socket:0 1/5",
			"cpu cpu:3 1/5",
			"dimm dimm:mc0/DIMM_B2 7/1000",
			"dimm dimm:mc0/DIMM_A1 2/1000",
			"dimm-pages dimm:mc0/DIMM_A1 2/5",
			"page page:0x400 1/2", "page page:0x401 1/2",
			"row-pages row:r1 2/3",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			cfg.Rules.Storm.Enabled = false
			if tt.config != nil {
				tt.config(cfg)
			}
			e := NewEngine(cfg)
			tt.feed(e)
			require.Equal(t, tt.want, hotView(e))
			// Closest names the same resources, each with its rule's
			// full level.
			var closest []string
			for _, l := range e.Closest() {
				require.False(t, l.Tripped, "%+v", l)
				require.NotZero(t, l.Window, "%+v", l)
				closest = append(closest, fmt.Sprintf("%s %s %d/%d", l.Rule, l.Resource, l.Count, l.Threshold))
			}
			require.Equal(t, tt.want, closest)
		})
	}
}

// The storm rule shows the machine's rate against its limit.
func TestHottestStormRate(t *testing.T) {
	e := NewEngine(nil)
	for i := 0; i < 3; i++ {
		e.Observe(cacheCE(time.Duration(i)*time.Millisecond, 2, 3, false))
	}
	got := e.Hottest()
	require.Equal(t, HotLevel{Rule: RuleStorm, Resource: fault.Machine, Count: 3, Threshold: 20000}, got[len(got)-1])
}

// The list never grows past MaxHot, however many keys are offered.
func TestHotListBounded(t *testing.T) {
	var h hotList[int]
	for i := 1; i <= 100; i++ {
		h.note(i, uint64(i%17), int64(i), 0)
	}
	require.Equal(t, MaxHot, h.n)
	for i := 0; i < h.n; i++ {
		require.GreaterOrEqual(t, h.level[i], uint64(15), "key %d", h.keys[i])
	}
}

// What the event path pays per rate-table add: one scan of a full list.
func BenchmarkHotListNote(b *testing.B) {
	var h hotList[uint64]
	for i := uint64(0); i < MaxHot; i++ {
		h.note(i, 10+i, 0, -1)
	}
	for i := 0; b.Loop(); i++ {
		h.note(uint64(1000+i), 1, int64(i), -1) // refused: colder than every entry
	}
}
