package daemon

import "time"

// How long a history batch waits for more events before it is written.
// Alone, a few records reach the store within historyFlushCalm. In a storm
// the writer sets no timer of its own: the main loop's busy tick, which
// runs every second while a storm lasts (to end it), asks it to write
// (stormtick.go), and it writes what it holds once the oldest event has
// waited historyFlushStorm. The same tick drives the eBPF source's sweep,
// so a storm second is one wake-up, not one per timer, and a write (whose
// system calls wake the runtime's sysmon, which then polls every 20 µs
// while the write runs: ~30 thread wake-ups under emulation) comes every
// few seconds, not every second. Both are bounds on how stale the history
// can be (a crash loses at most that much of it), not on a decision: a
// decision's transaction takes every event the writer holds (decide.go),
// and a full batch is written at once.
const (
	historyFlushCalm  = 100 * time.Millisecond
	historyFlushStorm = 5 * time.Second
)

// historyFlush is the wait for the batch being started now, 0 when the
// busy tick writes it (any goroutine: storming is an atomic the main loop
// keeps).
func (d *Daemon) historyFlush() time.Duration {
	if d.storming.Load() {
		return 0
	}
	return historyFlushCalm
}
