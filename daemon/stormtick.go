package daemon

// One tick drives a storm's time-driven work. While the daemon has some
// (timeDriven: a storm to end, held counter deltas, a hand-over), the
// main loop's busy tick ends the storm when due (tick), then asks the
// history writer to write what it holds and the eBPF source to read its
// aggregation maps. Each of those used to run on its own timer (three
// wake-ups a second in a storm, each waking the runtime's sysmon besides
// the thread that ran it); now the tick, a timerfd in the netpoller, wakes
// one thread once a second and the rest are goroutine hand-offs on it.

// sweeper is a source whose counters can be read on demand
// (ebpfsource.Source.SweepNow).
type sweeper interface{ SweepNow() }

// busyTick is the busy ticker's work (main loop).
func (d *Daemon) busyTick() {
	d.tick()
	d.flushHistory()
	d.sources.sweepNow()
}

// setBusy switches the busy ticker on while time-driven work waits. When
// it goes off, the history writer is asked once more to write: a batch it
// took while storming waits for a tick, not a timer of its own.
func (d *Daemon) setBusy(busy *onDemand) {
	on := d.timeDriven()
	if busy.on && !on {
		d.flushHistory()
	}
	busy.set(on)
}

// flushHistory asks the history writer to write what it holds; a request
// already pending covers this one.
func (d *Daemon) flushHistory() {
	select {
	case d.flushQ <- struct{}{}:
	default:
	}
}

// sweepNow asks every armed source that aggregates to report its counts.
func (s *sourceSet) sweepNow() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		if sw, ok := e.src.(sweeper); ok && e.state == SourceArmed {
			sw.SweepNow()
		}
	}
}
