package daemon

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/pageoffline"
	"github.com/selfprotect/selfprotect/store"
)

// A decision the last run journaled but did not store (it stopped between
// the journal's append and the store's transaction, before or after the
// kernel write) is imported at start and settled against the kernel like
// any unsettled decision: recorded isolated when the kernel shows the page
// poisoned, carried out again when not. One the store already has is not
// imported twice. The journal is emptied once everything is stored.
func TestJournalImportAtStart(t *testing.T) {
	const pfn = 0x5000
	tests := []struct {
		name     string
		poisoned bool // the kernel write was made before the stop
		stored   bool // the store took the decision before the stop
		// wantActs is what the store holds for the case once settled;
		// wantRedo whether the isolation is queued again.
		wantActs []fault.Outcome
		wantRedo bool
	}{
		{name: "stopped before the kernel write", wantActs: []fault.Outcome{fault.OutcomeIntended}, wantRedo: true},
		{name: "stopped after the kernel write", poisoned: true,
			wantActs: []fault.Outcome{fault.OutcomeIntended, fault.OutcomeIsolated}},
		{name: "stored as usual", poisoned: true, stored: true,
			wantActs: []fault.Outcome{fault.OutcomeIntended, fault.OutcomeIsolated}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := quietDaemon(t)
			close(d.storeDone) // no history writer
			writeKpageflags(t, d, pfn, tt.poisoned)
			t0 := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
			d.now = func() time.Time { return t0.Add(time.Minute) }
			c := fault.Case{ID: "case-1", Opened: t0, Rule: "page-ce", Diagnosis: fault.DiagSoftOfflinePage,
				Suspect: fault.Page(pfn), State: fault.CaseOpen, Summary: "test"}
			intents := []fault.Action{{CaseID: c.ID, Time: t0, Resource: c.Suspect, Kind: "soft-offline",
				Outcome: fault.OutcomeIntended, Detail: "decided; the kernel write follows"}}

			// The last run: the journal's append, maybe the store's
			// transaction, then the stop.
			state := t.TempDir()
			j, _, err := store.OpenJournal(filepath.Join(state, store.JournalFile), t0)
			require.NoError(t, err)
			require.NoError(t, j.Append(store.JournalDecision{Case: c, Intents: intents}))
			require.NoError(t, j.Close())
			if tt.stored {
				require.NoError(t, d.alerts.saveIntent(d.store, c, intents))
				require.NoError(t, d.store.AddAction(fault.Action{CaseID: c.ID, Time: t0, Resource: c.Suspect,
					Kind: "soft-offline", Outcome: fault.OutcomeIsolated}))
				require.NoError(t, d.store.UpdateCaseState(c.ID, fault.CaseIsolated, t0, ""))
			}

			// This run's start.
			d.opts.StateDir = state
			d.openJournal()
			require.NotNil(t, d.journal)
			t.Cleanup(func() { d.journal.Close() })
			d.importJournal()
			d.reconcileIntents()

			acts, err := d.store.Actions(c.ID)
			require.NoError(t, err)
			var got []fault.Outcome
			for _, a := range acts {
				got = append(got, a.Outcome)
			}
			require.Equal(t, tt.wantActs, got)
			require.Equal(t, tt.wantRedo, d.jobs.len() == 1, "the isolation is carried out again only when the kernel does not show it")
			if tt.wantRedo {
				redo, _ := d.jobs.pop()
				require.True(t, redo.replay && redo.saved, "a replay of the stored intent, not a new decision")
				require.Equal(t, []fault.Resource{c.Suspect}, redo.targets)
			}
			require.Zero(t, d.journal.Size(), "every journaled decision is in the store: the journal is empty")
		})
	}
}

// writeKpageflags gives the fake kernel a kpageflags file holding pfn,
// HWPOISON or not.
func writeKpageflags(t *testing.T, d *Daemon, pfn uint64, poisoned bool) {
	t.Helper()
	path := d.opts.Paths.ProcPath("kpageflags")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	data := make([]byte, 8*(pfn+1))
	if poisoned {
		binary.LittleEndian.PutUint64(data[8*pfn:], 1<<pageoffline.KPFHWPoison)
	}
	require.NoError(t, os.WriteFile(path, data, 0o644))
}
