package daemon

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/tracefs"
)

// lossQuiet is how long after a source last lost records its
// source-degraded problem stays open. A source's loss counters only grow
// while it runs, so without it one storm's overruns kept status degraded
// until the daemon restarted; long enough that a storm coming back in
// bursts keeps one problem (and one alert) open rather than many.
const lossQuiet = 10 * time.Minute

// recentLoss remembers when a source's loss counter last grew.
type recentLoss struct {
	mu     sync.Mutex
	total  uint64
	grewAt time.Time
}

// recent takes the counter's value now and says whether it grew within
// lossQuiet. A counter that went down was reset (a new instance): its
// value is the new baseline, and growth from there counts.
func (l *recentLoss) recent(total uint64, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if total > l.total {
		l.grewAt = now
	}
	l.total = total
	return !l.grewAt.IsZero() && now.Sub(l.grewAt) < lossQuiet
}

// traceProblems types the trace instance's health: what stops records
// (blind), unreadable stats (degraded), and overruns and drops (degraded
// while recent).
func traceProblems(h tracefs.Health, lossRecent bool) []problem {
	out := make([]problem, 0, len(h.Problems))
	for _, p := range h.Blind {
		out = append(out, problem{kind: alert.SourceBlind, text: p})
	}
	for _, p := range h.Lossy {
		if !lossRecent && slices.Contains(h.Lost, p) {
			continue
		}
		out = append(out, problem{kind: alert.SourceDegraded, text: p})
	}
	return out
}

// ebpfProblems: a record counted in the kernel is not lost (its count
// reaches the engines); one that found both the ring buffer and its
// aggregation map full is, and leaves us partly blind (degraded while
// recent, as tracefs overruns).
func ebpfProblems(lost uint64, lossRecent bool) []problem {
	if lost == 0 || !lossRecent {
		return nil
	}
	return []problem{{kind: alert.SourceDegraded,
		text: fmt.Sprintf("eBPF probes lost %d records (ring buffer and aggregation map both full)", lost)}}
}
