package countonce

import (
	"fmt"
	"time"
)

// Machine is what the daemon knows about this machine's error paths.
type Machine struct {
	// EDAC is true while an EDAC driver is bound (any mc/mcN).
	EDAC bool
	// CEC is true when the kernel's corrected error collector is active;
	// CECThreshold is its action_threshold as read ("" if unknown).
	CEC          bool
	CECThreshold string
}

// Path says where one class of error is counted from, and why.
type Path struct {
	Class string `json:"class"`
	From  string `json:"from"`
	Why   string `json:"why"`
}

// Describe explains the count-once rule as it applies to m, adding what
// the stage has seen so far (a firmware-first machine shows itself by
// mc_event or extlog records arriving first).
func (s *Stage) Describe(m Machine) []Path {
	st := s.Stats()
	seen := fmt.Sprintf("so far %d errors first seen in mce_record, %d in mc_event, %d in extlog_mem_event; %d later records merged",
		st.First["mce_record"], st.First["mc_event"], st.First["extlog_mem_event"],
		st.Merged["mce_record"]+st.Merged["mc_event"]+st.Merged["extlog_mem_event"])
	win := s.opts.Window.Round(time.Millisecond)
	pair := fmt.Sprintf("a record of the same error from another path (same page, or same DIMM when one lacks the page, within %s) adds only the page, DIMM label or row it brings", win)

	var ce Path
	ce.Class = "memory corrected"
	switch {
	case m.EDAC && m.CEC:
		ce.From = "mce_record, first; mc_event adds the DIMM label"
		ce.Why = fmt.Sprintf("the kernel's CEC (action_threshold %s) takes corrected DRAM errors after mce_record and before EDAC, "+
			"so mc_event and the EDAC counters see only the errors CEC lets through; counting mce_record at once is the only way not to be blind; ",
			orUnknown(m.CECThreshold)) + pair
	case m.EDAC:
		ce.From = "whichever of mce_record and mc_event arrives first"
		ce.Why = "an EDAC driver is bound and no CEC: every error comes both ways; " + pair
	case m.CEC:
		ce.From = "mce_record"
		ce.Why = fmt.Sprintf("no EDAC driver; the kernel's CEC also offlines a page itself after %s errors, which counts against the budgets", orUnknown(m.CECThreshold))
	default:
		ce.From = "mce_record"
		ce.Why = "no EDAC driver and no CEC: mce_record is the only path"
	}
	ce.Why += "; " + seen

	ue := Path{Class: "memory uncorrected", From: "mce_record", Why: "CEC never takes uncorrected errors"}
	if m.EDAC {
		ue.From = "whichever of mce_record and mc_event arrives first"
		ue.Why += "; " + pair
	}

	counters := Path{Class: "memory EDAC counters", From: "none", Why: "no EDAC driver bound"}
	if m.EDAC {
		counters.From = "EDAC counter deltas, only errors no mc_event delivered"
		counters.Why = fmt.Sprintf("each mc_event's errors are credited against its DIMM's next counter delta (for up to %s); %d counter errors credited, %d new",
			s.opts.CreditTTL, st.EDACCredited, st.EDACNew)
	}
	ff := Path{Class: "memory firmware-first", From: "mc_event (GHES) or extlog_mem_event (Intel eMCA)",
		Why: "with firmware-first there is no mce_record for memory errors; the first firmware record counts, " + pair}
	cpu := Path{Class: "cpu (cache, tlb, bus)", From: "mce_record", Why: "only the MCA record names the CPU and bank"}
	loc := Path{Class: "memory location", From: "EDAC label when known, else the MCA record's socket and channel (AMD: and the DIMM slot of its chip select)",
		Why: fmt.Sprintf("%d records located by joining the MCA bank's socket/channel (AMD: and chip select) to an EDAC label; %d locations learned from mce_record/mc_event pairs", st.Joined, st.Learned)}
	return []Path{ce, ue, counters, ff, cpu, loc}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
