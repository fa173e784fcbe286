package replay

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// injected is what testdata/rasdaemon-real/guest-init.sh injects, in
// order; each row of the databases the real rasdaemon wrote must be one of
// them, decoded back to the same address, CPU and severity.
var injected = []struct {
	class    fault.Class
	severity fault.Severity
	cpu      int
	addr     uint64 // 0: none
}{
	{fault.ClassMemory, fault.SeverityCorrected, 1, 0x2e89040}, // page A
	{fault.ClassMemory, fault.SeverityCorrected, 1, 0x2e89040},
	{fault.ClassMemory, fault.SeverityCorrected, 1, 0x3a15080}, // page B
	{fault.ClassMemory, fault.SeverityCorrected, 1, 0x12341c0}, // page C
	{fault.ClassMemory, fault.SeverityCorrected, 1, 0x12341c0},
	{fault.ClassMemory, fault.SeverityCorrected, 1, 0x12341c0},
	{fault.ClassCache, fault.SeverityCorrected, 2, 0}, // L0 data cache, core bank 1
	{fault.ClassCache, fault.SeverityCorrected, 2, 0},
	{fault.ClassCache, fault.SeverityCorrected, 2, 0},
	{fault.ClassCache, fault.SeverityCorrected, 2, 0},
	{fault.ClassCache, fault.SeverityCorrected, 2, 0},
	{fault.ClassMemory, fault.SeverityUncorrectedRecoverable, 1, 0x2e89040}, // UE on page A
	{fault.ClassMemory, fault.SeverityUncorrectedRecoverable, 1, 0x4b2c000}, // UE on page D
}

// TestRasdaemonRealDatabase replays databases Debian's rasdaemon 0.6.8
// wrote itself in the kernel lab (testdata/rasdaemon-real/README.md says
// how): on the Intel model (bank 7 memory controller) and the AMD model
// (K8 northbridge bank 4). QEMU has no EDAC, so only mce_record rows exist.
//
// Expected with the default policy on a 4-CPU, 1 GiB host: pages A and C
// retired by the page rule (B has one error), one CPU case offlining CPU 2
// (no SMT siblings), two UE cases whose pages the kernel had already
// poisoned (counted as already isolated, not retired), and of the two UE
// pages A is protected (retired at its second CE, the UE 10 records later)
// and D is not (no warning). On Intel the MCA location names a DIMM for
// all four pages, below the DIMM rule's 5 distinct pages: no DIMM case.
// rasdaemon's own policy sees none of it (it
// reads mc_event only); mcelog sees the 8 memory records and retires the
// same two pages.
func TestRasdaemonRealDatabase(t *testing.T) {
	host := HostSpec{RAMMiB: 1 << 10, CPUs: 4, ThreadsPerCore: 1}
	for _, tt := range []struct {
		db string
		// lsb is the lowest valid address bit the decoder finds: Intel's
		// MISC 0x8c says 12; legacy AMD's MISC is a threshold counter, so
		// the address counts in full.
		lsb uint8
	}{
		{"intel-6.12.db", 12},
		{"amd-6.12.db", 0},
	} {
		t.Run(tt.db, func(t *testing.T) {
			path := filepath.Join("testdata", "rasdaemon-real", tt.db)
			recs, err := ReadRasdaemon(path, "lab")
			require.NoError(t, err)
			require.Len(t, recs, len(injected))
			for i, want := range injected {
				ev := recs[i].Event
				require.Equal(t, fault.SourceTraceMCE, ev.Source, "row %d", i+1)
				require.Equal(t, want.class, ev.Class, "row %d", i+1)
				require.Equal(t, want.severity, ev.Severity, "row %d", i+1)
				require.Equal(t, want.cpu, ev.CPU, "row %d", i+1)
				require.Equal(t, want.addr != 0, ev.AddrValid, "row %d", i+1)
				if want.addr != 0 {
					require.Equal(t, tt.lsb, ev.AddrLSB, "row %d", i+1)
					require.Equal(t, want.addr&^(1<<tt.lsb-1), ev.PhysAddr, "row %d", i+1)
				}
				if i > 0 {
					require.False(t, ev.Received.Before(recs[i-1].Event.Received), "row %d out of order", i+1)
				}
			}

			r, err := New(host, builtin(t, "selfprotect", "rasdaemon", "mcelog")...)
			require.NoError(t, err)
			require.NoError(t, r.AddRaw(path, recs))
			rep := r.Report()
			require.EqualValues(t, len(injected), rep.Events)
			p := rep.Policies[0]
			require.EqualValues(t, len(injected), p.EventsSeen)
			require.Equal(t, map[string]int{"page": 2, "cpu": 1, "uncorrected": 2}, p.Cases)
			require.EqualValues(t, 2, p.PagesRetired)
			require.EqualValues(t, 1, p.CPUsOffline)
			require.EqualValues(t, 2, p.AlreadyIsolated)
			require.Equal(t, 2, p.UEPages)
			require.Equal(t, 1, p.ProtectedByPage)
			require.Equal(t, 0, p.ProtectedByDIMM)
			// Page A's lead: from its second CE (row 2) to its UE (row 12).
			require.Equal(t, []time.Duration{recs[11].Event.Received.Sub(recs[1].Event.Received)}, p.UELead)

			ras, mcelog := rep.Policies[1], rep.Policies[2]
			require.Zero(t, ras.EventsSeen)
			require.Empty(t, ras.Cases)
			require.EqualValues(t, 8, mcelog.EventsSeen)
			require.Equal(t, map[string]int{"page": 2}, mcelog.Cases)
			require.EqualValues(t, 2, mcelog.PagesRetired)
		})
	}
}
