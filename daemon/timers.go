package daemon

import (
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
)

// An idle daemon (no error arriving, nothing held) wakes only for the
// health check, which also pings the systemd watchdog, for the hourly
// history prune and for the EDAC poll. Work that needs time to pass — a
// storm to end, counter deltas held for their mc_events, a hand-over's
// de-duplication, store writes to retry — runs every second only while
// there is some: a host with healthy memory should not pay for it.

// DefaultHealthInterval is how often sources and the kernel are checked
// when the options say nothing: half the unit's WatchdogSec=30s, so the
// ping riding on the check is never late. A source that dies wakes the
// main loop at once; the interval only bounds how late an instance
// disabled behind our back, ring-buffer overruns or CPUs offlined by
// someone else show in status and alerts.
const DefaultHealthInterval = 15 * time.Second

// busyTick is the period of the time-driven work while there is some: a
// storm ends 60 s after its rate fell, counter deltas wait 5 s, so a
// second is fine-grained enough for both.
const busyTick = time.Second

// writeRetry is how often the action worker retries held store writes.
const writeRetry = time.Second

// healthEvery is the health check's period: the configured interval, or
// half the watchdog timeout systemd gave us (0 = none) when that is
// shorter, as sd_watchdog_enabled(3) asks.
func healthEvery(configured, watchdog time.Duration) time.Duration {
	if configured <= 0 {
		configured = DefaultHealthInterval
	}
	if half := watchdog / 2; half > 0 && half < configured {
		return half
	}
	return configured
}

// watchdogTimeout is the watchdog timeout systemd set for this process
// (WATCHDOG_USEC), 0 when there is none.
func watchdogTimeout(log logrus.FieldLogger) time.Duration {
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.WithError(err).Warn("unreadable systemd watchdog setting; pinging at the health interval")
		return 0
	}
	return wd
}

// timeDriven says whether some work waits for time to pass rather than
// for an event (main loop only).
func (d *Daemon) timeDriven() bool {
	return d.storming.Load() || d.stage.Held() > 0 || d.sources.handingOver()
}

// onDemand is a ticker that runs only while switched on. It relies on Go
// 1.23 timers: after Stop no stale tick is delivered.
type onDemand struct {
	t     *time.Ticker
	every time.Duration
	on    bool
}

func newOnDemand(every time.Duration) *onDemand {
	t := time.NewTicker(every)
	t.Stop()
	return &onDemand{t: t, every: every}
}

// set switches the ticker on or off; switching on starts a full period.
func (o *onDemand) set(on bool) {
	if on == o.on {
		return
	}
	if on {
		o.t.Reset(o.every)
	} else {
		o.t.Stop()
	}
	o.on = on
}

func (o *onDemand) C() <-chan time.Time { return o.t.C }

func (o *onDemand) stop() { o.t.Stop() }

// handingOver says whether a hand-over's de-duplication is on; it ends
// with time, at a refresh (main loop only).
func (s *sourceSet) handingOver() bool { return s != nil && s.overlap != nil }
