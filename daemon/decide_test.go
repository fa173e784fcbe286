package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/store"
)

// A decision goes into the store with the events the history writer holds,
// in one transaction: whatever the order of events, decisions and the
// writer's own batches, each event is stored exactly once (a restart
// rebuilds the engines from them), and a decision whose write fails leaves
// its events with the writer rather than losing them.
func TestDecisionStoresEventsOnce(t *testing.T) {
	tests := []eventsOnceCase{
		{name: "events before", before: 2},
		{name: "events before and after", before: 3, after: 4},
		{name: "no event held", after: 1},
		{name: "decision write fails", before: 2, after: 1, badCase: true},
		{name: "writer stopped", before: 2, stopped: true},
	}
	for _, tt := range tests {
		for _, journaled := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/journal=%v", tt.name, journaled), func(t *testing.T) {
				testDecisionStoresEventsOnce(t, tt, journaled)
			})
		}
	}
}

type eventsOnceCase struct {
	name string
	// before and after are the events sent to the history writer before
	// the decision and after it.
	before, after int
	// badCase makes the decision's write fail (a case without ID).
	badCase bool
	// stopped: the writer has stopped before the decision.
	stopped bool
}

func testDecisionStoresEventsOnce(t *testing.T, tt eventsOnceCase, journaled bool) {
	d := quietDaemon(t)
	if journaled {
		withJournal(t, d)
	}
	q := make(chan fault.Event, 64)
	go d.storeEvents(q)
	t0 := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	send := func(n, from int) {
		for i := range n {
			ev := fault.NewEvent(fault.SourceTraceMCE, t0.Add(time.Duration(from+i)*time.Millisecond))
			ev.Class, ev.PhysAddr, ev.AddrValid, ev.Count = fault.ClassMemory, 0x5000040, true, 1
			q <- ev
		}
	}
	send(tt.before, 0)
	if tt.stopped {
		close(q)
		<-d.storeDone
	}
	c := fault.Case{ID: "case-1", Opened: t0, Rule: "page-ce", Diagnosis: fault.DiagSoftOfflinePage,
		Suspect: fault.Page(0x5000), State: fault.CaseOpen, Summary: "test"}
	if tt.badCase {
		c.ID = ""
	}
	j := job{c: c, targets: []fault.Resource{c.Suspect}}
	d.writeAhead(&j)
	require.Equal(t, journaled && !tt.badCase, j.journaled != nil, "a live decision goes to the journal when there is one")
	d.afterWrite(&j) // after the kernel write

	if !tt.badCase {
		// Durable with the events that fed it once stored,
		// whatever the writer's own batches did.
		evs, err := d.store.Events(store.EventQuery{})
		require.NoError(t, err)
		require.Len(t, evs, tt.before, "the events that fed the decision are stored with it")
		acts, err := d.store.Unsettled()
		require.NoError(t, err)
		require.Len(t, acts, 1)
		require.Equal(t, c.Suspect, acts[0].Resource)
	} else {
		require.Equal(t, int64(1), d.writes.heldN.Load(), "the failed decision is held for retry")
	}
	if !tt.stopped {
		send(tt.after, tt.before)
		close(q)
		<-d.storeDone
	}
	evs, err := d.store.Events(store.EventQuery{})
	require.NoError(t, err)
	require.Len(t, evs, tt.before+tt.after, "every event stored exactly once")
	for i, ev := range evs {
		require.Equal(t, t0.Add(time.Duration(i)*time.Millisecond), ev.Received, fmt.Sprint("event ", i))
	}
	require.Equal(t, uint64(tt.before+tt.after), d.counters.stored.Load())
}

// A settled decision stores its actions and the case's new state in one
// transaction: both land, or (an action that cannot be stored) neither.
func TestOutcomeIsOneTransaction(t *testing.T) {
	tests := []struct {
		name      string
		otherCase bool // the second action names another case: the write fails
		wantState fault.CaseState
		wantActs  int // intent + outcomes
	}{
		{name: "stored together", wantState: fault.CaseIsolated, wantActs: 3},
		{name: "nothing when one action fails", otherCase: true, wantState: fault.CaseOpen, wantActs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := quietDaemon(t)
			close(d.storeDone) // no history writer: the decision goes alone
			t0 := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
			c := fault.Case{ID: "case-1", Opened: t0, Rule: "page-ce", Diagnosis: fault.DiagSoftOfflinePage,
				Suspect: fault.Page(0x5000), State: fault.CaseOpen, Summary: "test"}
			j := job{c: c, targets: []fault.Resource{c.Suspect}}
			d.writeAhead(&j)
			acts := []fault.Action{
				{CaseID: c.ID, Time: t0, Resource: c.Suspect, Kind: "soft-offline", Outcome: fault.OutcomeIsolated},
				{CaseID: c.ID, Time: t0, Resource: fault.Page(0x5001), Kind: "soft-offline", Outcome: fault.OutcomeIsolated},
			}
			if tt.otherCase {
				acts[1].CaseID = "case-2"
			}
			d.storeOutcome(c.ID, acts, fault.CaseIsolated, t0.Add(time.Second))
			got, err := d.store.Case(c.ID)
			require.NoError(t, err)
			require.Equal(t, tt.wantState, got.State)
			stored, err := d.store.Actions(c.ID)
			require.NoError(t, err)
			require.Len(t, stored, tt.wantActs)
		})
	}
}

// withJournal gives d a decision journal in a fresh state directory.
func withJournal(t *testing.T, d *Daemon) {
	t.Helper()
	d.opts.StateDir = t.TempDir()
	d.openJournal()
	require.NotNil(t, d.journal)
	t.Cleanup(func() { d.journal.Close() })
}
