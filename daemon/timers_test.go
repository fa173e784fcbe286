package daemon

import (
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func TestHealthEvery(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		configured, watchdog time.Duration
		want                 time.Duration
	}{
		{"no watchdog: the configured interval", 5 * time.Second, 0, 5 * time.Second},
		{"nothing configured: the default", 0, 0, DefaultHealthInterval},
		{"the unit's 30 s watchdog: every 15 s", 0, 30 * time.Second, 15 * time.Second},
		{"a short watchdog wins: half of it", 15 * time.Second, 2 * time.Second, time.Second},
		{"a long watchdog does not slow a short interval", time.Second, time.Minute, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, healthEvery(tc.configured, tc.watchdog))
		})
	}
}

// The timeout comes from WATCHDOG_USEC as systemd sets it; a watchdog
// meant for another process (WATCHDOG_PID) is not ours.
func TestWatchdogTimeout(t *testing.T) {
	log := logrus.New()
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "2000000")
	require.Equal(t, 2*time.Second, watchdogTimeout(log))
	t.Setenv("WATCHDOG_USEC", "")
	require.Zero(t, watchdogTimeout(log))
	t.Setenv("WATCHDOG_USEC", "2000000")
	t.Setenv("WATCHDOG_PID", "1")
	require.Zero(t, watchdogTimeout(log))
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "soon")
	require.Zero(t, watchdogTimeout(log), "unreadable: no watchdog, a warning")
}

// Switched off, the ticker delivers nothing, not even a tick that was due
// before it stopped; switched on, it ticks.
func TestOnDemandTicker(t *testing.T) {
	o := newOnDemand(time.Millisecond)
	defer o.stop()
	o.set(true)
	select {
	case <-o.C():
	case <-time.After(10 * time.Second):
		t.Fatal("no tick while on")
	}
	// Let ticks fall due, then switch off: none may be delivered after.
	time.Sleep(5 * time.Millisecond)
	o.set(false)
	select {
	case <-o.C():
		t.Fatal("a tick after the ticker was switched off")
	default:
	}
	o.set(true)
	o.set(true) // no restart of the period, no second timer
	select {
	case <-o.C():
	case <-time.After(10 * time.Second):
		t.Fatal("no tick after switching on again")
	}
}

// The daemon has time-driven work only while something waits for time:
// a storm to end, counter deltas held, a hand-over's de-duplication.
func TestTimeDriven(t *testing.T) {
	d, err := New(Options{StateDir: t.TempDir(), Log: logrus.New()})
	require.NoError(t, err)
	require.False(t, d.timeDriven(), "a fresh daemon waits for nothing")
	d.storming.Store(true)
	require.True(t, d.timeDriven())
	d.storming.Store(false)
	d.sources = &sourceSet{overlap: newOverlap()}
	require.True(t, d.timeDriven())
	d.sources.overlap = nil
	require.False(t, d.timeDriven())

	// A counter delta no mc_event has credited waits in the stage.
	at := time.Now()
	delta := fault.NewEvent(fault.SourceEDACPoll, at)
	delta.Class, delta.Severity, delta.MC, delta.DIMMLabel = fault.ClassMemory, fault.SeverityCorrected, 0, "DIMM_A1"
	require.Empty(t, d.stage.Observe(delta))
	require.True(t, d.timeDriven())
	require.Len(t, d.stage.Flush(at.Add(time.Minute)), 1)
	require.False(t, d.timeDriven())
}
