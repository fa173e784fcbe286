package daemon

import "time"

// How long a history batch waits for more events before it is written.
// Alone, a few records reach the store within historyFlushCalm. In a storm
// the writer sets no timer of its own: the main loop's busy tick, which
// runs every second while a storm lasts (to end it), asks it to write
// what it holds (stormtick.go), and the same tick drives the eBPF source's
// sweep, so a storm second is one wake-up, not one per timer. Both are
// bounds on how stale the history can be, not on a decision: a decision's
// transaction takes every event the writer holds (decide.go).
const historyFlushCalm = 100 * time.Millisecond

// historyFlush is the wait for the batch being started now, 0 when the
// busy tick writes it (any goroutine: storming is an atomic the main loop
// keeps).
func (d *Daemon) historyFlush() time.Duration {
	if d.storming.Load() {
		return 0
	}
	return historyFlushCalm
}
