package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// t0 is the tests' clock: every time is an offset from it.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "selfprotect.db")
	s, err := Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, path
}

// memoryEvent is a corrected DRAM error on an Intel machine, with every
// register above 2^63 so a signed round trip would show.
func memoryEvent(received time.Time, pa uint64) fault.Event {
	e := fault.NewEvent(fault.SourceTraceMC, received)
	e.Recorded = received.Add(-time.Millisecond)
	e.Class, e.Severity, e.Vendor = fault.ClassMemory, fault.SeverityCorrected, fault.VendorIntel
	e.Count = 3
	e.CPU, e.Socket, e.Bank = 2, 0, 7
	e.Status = 0x9c00000000000090
	e.Addr = 0x8000000000000000 | pa
	e.Misc = 0xffffffffffffffff
	e.Synd, e.IPID = 0x8000000000000001, 0xfedcba9876543210
	e.PhysAddr, e.AddrValid, e.AddrLSB = pa, true, 12
	e.MC, e.DIMMLabel = 0, "CPU_SrcID#0_Ha#0_Chan#1_DIMM#0"
	e.Layers = [3]int{0, 1, 0}
	e.Row = "mc0/csrow3/row1234"
	e.Detail = "memory read error"
	return e
}

func cacheEvent(received time.Time, cpu int) fault.Event {
	e := fault.NewEvent(fault.SourceTraceMCE, received)
	e.Class, e.Severity, e.Vendor = fault.ClassCache, fault.SeverityCorrected, fault.VendorAMD
	e.CPU, e.Socket, e.Bank = cpu, 1, 1
	e.CacheLevel, e.CoreBank = 1, true
	e.Status = 0xdc2040000000011b
	return e
}

func newCase(id string, opened time.Time, suspect fault.Resource) fault.Case {
	ev := memoryEvent(opened, 0x2d94000)
	return fault.Case{
		ID: id, Opened: opened, Rule: "page-ce", Diagnosis: fault.DiagSoftOfflinePage,
		Suspect: suspect, FRU: "dimm:mc0/CPU_SrcID#0_Ha#0_Chan#1_DIMM#0", State: fault.CaseOpen,
		Summary: "2 CEs on one page within 24h", Evidence: []fault.Evidence{fault.EvidenceOf(&ev)},
	}
}
