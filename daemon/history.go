package daemon

import "time"

// How long a history batch waits for more events before it is written.
// Alone, a few records reach the store within historyFlushCalm. In a storm
// the eBPF source hands over about one event per storming key per sweep:
// waiting historyFlushStorm gathers a second of them into one transaction
// (and one wake-up) instead of one per sweep's events. Both are bounds on
// how stale the history can be, not on a decision: a decision's
// transaction takes every event the writer holds (decide.go).
const (
	historyFlushCalm  = 100 * time.Millisecond
	historyFlushStorm = time.Second
)

// historyFlush is the wait for the batch being started now (any goroutine:
// storming is an atomic the main loop keeps).
func (d *Daemon) historyFlush() time.Duration {
	if d.storming.Load() {
		return historyFlushStorm
	}
	return historyFlushCalm
}
