package daemon

import (
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/internal/ktimer"
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

// onDemand is a ticker that runs only while switched on: a timerfd in the
// netpoller (internal/ktimer: a tick wakes one thread, not sysmon too),
// or a time.Ticker where there is none. Either way no stale tick is
// delivered after it is switched off (Go 1.23 timers; ktimer's Stop).
type onDemand struct {
	k     *ktimer.Ticker
	t     *time.Ticker
	every time.Duration
	on    bool
}

func newOnDemand(every time.Duration) *onDemand {
	if k, err := ktimer.New(); err == nil {
		return &onDemand{k: k, every: every}
	}
	return &onDemand{t: stoppedTicker(every), every: every}
}

func stoppedTicker(every time.Duration) *time.Ticker {
	t := time.NewTicker(every)
	t.Stop()
	return t
}

// set switches the ticker on or off; switching on starts a full period.
func (o *onDemand) set(on bool) {
	if on == o.on {
		return
	}
	o.on = on
	if o.k != nil {
		var err error
		if on {
			err = o.k.Reset(o.every)
		} else {
			err = o.k.Stop()
		}
		if err == nil {
			return
		}
		// A timerfd that cannot be armed: tick from the runtime instead.
		o.k.Close()
		o.k, o.t = nil, stoppedTicker(o.every)
	}
	if on {
		o.t.Reset(o.every)
	} else {
		o.t.Stop()
	}
}

func (o *onDemand) C() <-chan time.Time {
	if o.k != nil {
		return o.k.C()
	}
	return o.t.C
}

func (o *onDemand) stop() {
	if o.k != nil {
		o.k.Close()
		return
	}
	o.t.Stop()
}

// handingOver says whether a hand-over's de-duplication is on; it ends
// with time, at a refresh (main loop only).
func (s *sourceSet) handingOver() bool { return s != nil && s.overlap != nil }
