package daemon

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/store"
)

// While storming the history writer sets no timer: the busy tick, on
// while storming, writes the batch (stormtick.go).
func TestHistoryFlushWait(t *testing.T) {
	d := quietDaemon(t)
	require.Equal(t, historyFlushCalm, d.historyFlush())
	d.storming.Store(true)
	require.Zero(t, d.historyFlush())
	require.True(t, d.timeDriven(), "storming: the busy tick runs and writes the history")
}

// The longer wait never holds back what a decision rests on: a decision's
// transaction (withHistory) gets every event handed over before it that
// is not stored yet, storm or not.
func TestHistorySyncedBeforeDecision(t *testing.T) {
	for _, storming := range []bool{false, true} {
		t.Run(map[bool]string{false: "calm", true: "storming"}[storming], func(t *testing.T) {
			d := quietDaemon(t)
			d.storming.Store(storming)
			q := make(chan fault.Event, 16)
			go d.storeEvents(q)
			t.Cleanup(func() { close(q); <-d.storeDone })

			at := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
			for i := range 3 {
				ev := fault.NewEvent(fault.SourceTraceMCE, at.Add(time.Duration(i)*time.Millisecond))
				ev.Class, ev.Severity, ev.CPU = fault.ClassMemory, fault.SeverityCorrected, i
				q <- ev
			}
			require.True(t, d.withHistory(func(held []fault.Event) bool {
				return d.store.AddEvents(held) == nil
			}))
			got, err := d.store.Events(store.EventQuery{})
			require.NoError(t, err)
			require.Len(t, got, 3, "stored when the decision's transaction ran")
		})
	}
}
