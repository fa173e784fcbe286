package daemon

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/store"
)

// A memory_failure_event marks the page isolated by the kernel at once:
// it counts against the page budget before meminfo shows it, a later case
// of ours on that page never writes, and a second event only annotates.
func TestKernelIsolatedPage(t *testing.T) {
	d := quietDaemon(t)
	ev := fault.NewEvent(fault.SourceTraceMemoryFailure, time.Now())
	ev.Class, ev.PhysAddr, ev.AddrValid, ev.AddrLSB = fault.ClassMemory, 0x5000000, true, 12
	ev.Detail = "kernel memory_failure on pfn 0x5000: recovery action for dirty LRU page: Recovered"
	d.kernelIsolated(ev)

	r := fault.Page(0x5000)
	require.True(t, d.isolated.has(r))
	require.True(t, d.byOther[r])
	require.Equal(t, uint64(1), d.memoryBudget().RetiredPages, "counted before any meminfo read shows it")
	cases, err := d.store.Cases(store.CaseFilter{})
	require.NoError(t, err)
	require.Len(t, cases, 1)
	require.Equal(t, diagKernelIsolated, cases[0].Diagnosis)
	require.Equal(t, fault.CaseIsolated, cases[0].State)

	done, a := d.alreadyActed(job{c: fault.Case{ID: "x"}}, r, "soft-offline")
	require.True(t, done)
	require.Equal(t, fault.OutcomeIsolatedByOther, a.Outcome)

	d.kernelIsolated(ev)
	cases, err = d.store.Cases(store.CaseFilter{})
	require.NoError(t, err)
	require.Len(t, cases, 1, "the second event annotates, it opens nothing")
	hist, err := d.store.CaseHistory(cases[0].ID)
	require.NoError(t, err)
	require.Contains(t, hist[len(hist)-1].Note, "kernel: kernel memory_failure on pfn 0x5000")
}
