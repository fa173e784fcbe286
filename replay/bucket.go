package replay

import (
	"time"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// leakyPages models the per-page threshold rasdaemon (ras-page-isolation.c,
// PAGE_CE_THRESHOLD per PAGE_CE_REFRESH_CYCLE) and mcelog (leaky-bucket.c
// behind memory-ce-threshold) share: each page has a count and the start
// of its cycle. When an error arrives a cycle or more after the start, the
// count drops by threshold × elapsed cycles (what the elapsed time
// "tolerates") and the cycle restarts; then the error's count is added,
// and reaching the threshold offlines the page and empties the count.
// Unlike a sliding window, errors just inside one cycle and just inside
// the next can add up, and a page can sit at threshold-1 for ever.
//
// Approximations: mcelog caps the pages it tracks (replacing counters past
// its limit) and starts a new page's bucket at its own clock; replay
// tracks every page and starts the cycle at the record's time.
type leakyPages struct {
	threshold uint64
	cycle     time.Duration
	pages     map[uint64]*leakyPage
}

type leakyPage struct {
	start time.Time
	count uint64
}

func newLeakyPages(threshold uint64, cycle time.Duration) *leakyPages {
	return &leakyPages{threshold: max(threshold, 1), cycle: cycle, pages: map[uint64]*leakyPage{}}
}

// ObserveParts implements decider; the tools it mimics read raw records.
func (l *leakyPages) ObserveParts(ev *fault.Event, _ policy.Parts) []policy.Decision {
	if ev.Class != fault.ClassMemory || ev.Severity != fault.SeverityCorrected || !ev.AddrValid || ev.AddrLSB > 12 {
		return nil
	}
	t, pfn := ev.Received, ev.PFN()
	p := l.pages[pfn]
	if p == nil {
		p = &leakyPage{start: t}
		l.pages[pfn] = p
	}
	if period := t.Sub(p.start); period >= l.cycle {
		tolerate := uint64(float64(period) / float64(l.cycle) * float64(l.threshold))
		p.count -= min(tolerate, p.count)
		p.start = t
	}
	p.count += uint64(max(ev.Count, 1))
	if p.count < l.threshold {
		return nil
	}
	p.count = 0
	r := fault.Page(pfn)
	return []policy.Decision{{
		Case: fault.Case{Opened: t, Rule: policy.RulePage, Diagnosis: fault.DiagSoftOfflinePage, Suspect: r,
			FRU: ev.DIMMLabel, State: fault.CaseOpen,
			Evidence: []fault.Evidence{{Time: t, Source: ev.Source, Class: ev.Class, Count: ev.Count, DIMM: ev.DIMMLabel}}},
		Targets: []fault.Resource{r},
	}}
}
