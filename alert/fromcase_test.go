package alert

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func TestFromCase(t *testing.T) {
	c := fault.Case{
		ID: "5f0c8a52-7e1d-4d55-9a3c-0b8e2f6a9d41", Opened: t0, Rule: "page", Diagnosis: fault.DiagSoftOfflinePage,
		Suspect: fault.Page(0x2d94), FRU: "dimm:mc0/DIMM_A1", State: fault.CaseOpen, Summary: "2 CEs on page 0x2d94",
	}
	for i := range 25 {
		c.Evidence = append(c.Evidence, fault.Evidence{
			Time: t0.Add(time.Duration(i) * time.Second), Source: fault.SourceTraceMCE, Count: 2,
			Status: 0x9c00000000000090, Addr: 0x2d94000, DIMM: "DIMM_A1", Summary: "corrected memory",
		})
	}
	a := FromCase(c, Isolated, "db-7", t0.Add(time.Minute), "selfprotect repair 5f0c8a52", "")
	require.NoError(t, a.Validate())
	require.Equal(t, StableID("db-7", c.ID, Isolated), a.ID)
	require.Equal(t, SeverityWarning, a.Severity)
	require.Equal(t, "page:0x2d94", a.Suspect)
	require.Equal(t, "dimm:mc0/DIMM_A1", a.FRU)
	require.Equal(t, "2 CEs on page 0x2d94", a.Summary)
	require.Equal(t, 50, a.EvidenceCount, "every error counts, shown or not")
	require.Len(t, a.Evidence, MaxEvidenceLines)
	require.True(t, strings.HasPrefix(a.Evidence[0], "2026-03-14T09:26:53Z "), a.Evidence[0])
	require.Contains(t, a.Evidence[0], "status=0x9c00000000000090 addr=0x2d94000 dimm=DIMM_A1")

	refused := FromCase(c, Refused, "db-7", t0, "", "refused: page budget (0.1% of RAM) exhausted")
	require.Equal(t, "refused: page budget (0.1% of RAM) exhausted", refused.Summary)
	require.NotEqual(t, a.ID, refused.ID)
}
