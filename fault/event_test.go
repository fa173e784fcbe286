package fault

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An event's one-line form is the evidence's summary in every case and
// alert; unknown CPU and bank, an invalid address and no DIMM leave their
// parts out, and a DIMM label is quoted.
func TestEventString(t *testing.T) {
	at := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	full := NewEvent(SourceEBPF, at)
	full.Severity, full.Class, full.Count, full.CPU, full.Bank = SeverityCorrected, ClassMemory, 1, 1, 7
	full.PhysAddr, full.AddrValid, full.DIMMLabel = 0x3c3d000, true, "socket 0 bank 7 channel 0"
	bare := NewEvent(SourceEDACPoll, at)
	bare.Severity, bare.Class, bare.Count = SeverityCorrected, ClassMemory, 12
	zero := NewEvent(SourceTraceMCE, at)
	zero.Severity, zero.Class, zero.Count, zero.CPU, zero.Bank, zero.AddrValid = SeverityFatal, ClassCache, 0, 0, 0, true
	quoted := NewEvent(SourceTraceMC, at)
	quoted.Severity, quoted.Class, quoted.Count, quoted.DIMMLabel = SeverityCorrected, ClassMemory, 3, "CPU_SrcID#0 \"A1\"\t\xff"
	for _, tc := range []struct {
		ev   Event
		want string
	}{
		{full, `corrected memory x1 cpu=1 bank=7 addr=0x3c3d000 dimm="socket 0 bank 7 channel 0" src=ebpf:mce_record`},
		{bare, `corrected memory x12 src=edac-poll`},
		{zero, `fatal cache x0 cpu=0 bank=0 addr=0x0 src=tracefs:mce_record`},
		{quoted, `corrected memory x3 dimm="CPU_SrcID#0 \"A1\"\t\xff" src=tracefs:mc_event`},
	} {
		require.Equal(t, tc.want, tc.ev.String())
	}
}
