package alert

import (
	"fmt"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// MaxEvidenceLines caps the evidence table an alert carries: a case of a
// thousand errors must not make a thousand-line mail or an oversized row.
const MaxEvidenceLines = 20

// FromCase builds the alert for transition t of case c. undo is the
// command reversing the case's action ("" when none); summary overrides
// the case's summary when set (a refusal names the budgets it broke).
func FromCase(c fault.Case, t Transition, host string, now time.Time, undo, summary string) Alert {
	if summary == "" {
		summary = c.Summary
	}
	a := Alert{
		ID: StableID(host, c.ID, t), Case: c.ID, Transition: t, Severity: DefaultSeverity(t),
		Suspect: string(c.Suspect), FRU: c.FRU, Summary: summary, Host: host, Undo: undo, Time: now,
	}
	for _, e := range c.Evidence {
		a.EvidenceCount += int(e.Count)
		if len(a.Evidence) < MaxEvidenceLines {
			a.Evidence = append(a.Evidence, evidenceLine(e))
		}
	}
	return a
}

func evidenceLine(e fault.Evidence) string {
	s := fmt.Sprintf("%s %s", e.Time.UTC().Format(time.RFC3339), e.Source)
	if e.Summary != "" {
		s += " " + e.Summary
	}
	if e.Status != 0 {
		s += fmt.Sprintf(" status=%#x", e.Status)
	}
	if e.Addr != 0 {
		s += fmt.Sprintf(" addr=%#x", e.Addr)
	}
	if e.DIMM != "" {
		s += " dimm=" + e.DIMM
	}
	return s
}
