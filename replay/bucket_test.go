package replay

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/policy"
)

// TestLeakyPagesCycle: rasdaemon's and mcelog's count restarts at the first
// error after a cycle ends, where our engine's window slides. Threshold 3
// per 24 h, errors at 0, 20, 25 and 26 h: the cycle that began at 0 h ends
// before 25 h, so the count restarts there and reaches only 2 — while a
// sliding 24 h window at 26 h holds the errors of 20, 25 and 26 h and
// trips.
func TestLeakyPagesCycle(t *testing.T) {
	hours := []time.Duration{0, 20, 25, 26}
	l := newLeakyPages(3, day)
	cfg := policy.Defaults()
	cfg.Rules.Page.Threshold = 3
	eng := policy.NewEngine(cfg)
	var leaky, sliding int
	for _, hr := range hours {
		ev := memCE(0x77, t0.Add(hr*time.Hour))
		leaky += len(l.ObserveParts(ev, policy.AllParts))
		sliding += len(eng.Observe(ev))
	}
	require.Equal(t, 0, leaky)
	require.Equal(t, 1, sliding)

	// Within one cycle the count adds up: a record of 2 errors then one more
	// 23 h later trips, and the count empties.
	l = newLeakyPages(3, day)
	ev := memCE(0x78, t0)
	ev.Count = 2
	require.Empty(t, l.ObserveParts(ev, policy.AllParts))
	d := l.ObserveParts(memCE(0x78, t0.Add(23*time.Hour)), policy.AllParts)
	require.Len(t, d, 1)
	require.EqualValues(t, 0, l.pages[0x78].count)
}
