package policy

import (
	"strconv"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// Level is one rule's current count for a resource (a metric gauge).
type Level struct {
	Rule      string
	Resource  fault.Resource // in its canonical spelling (page:0x2d94, cpu:3)
	Count     uint64         // errors, or distinct pages for the *-pages rules
	Threshold uint64
	Window    time.Duration
	Tripped   bool // a case is open; the rule stays quiet until Reset
}

// Levels reports every rule's level for r at the newest time the engine
// has seen. Unknown or untracked resources give zero counts.
func (e *Engine) Levels(r fault.Resource) []Level {
	r = canonical(r)
	lv := e.levels(r)
	for i := range lv {
		lv[i].Resource = r
	}
	return lv
}

// Closest is what an operator asks first: which resources are nearest to
// tripping. Per rule, the resources Hottest keeps (untripped, counting
// within the window, hottest first), each with its full level, and the
// machine's storm rate when the storm rule is on.
func (e *Engine) Closest() []Level {
	var out []Level
	for _, h := range e.Hottest() {
		for _, l := range e.Levels(h.Resource) {
			if l.Rule == h.Rule {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// canonical spells a page or CPU the way the engine names them, so that
// page:0x2D94 and page:0x02d94 report as the page:0x2d94 of the cases.
func canonical(r fault.Resource) fault.Resource {
	switch r.Kind() {
	case fault.KindPage:
		if pfn, err := r.PFN(); err == nil {
			return fault.Page(pfn)
		}
	case fault.KindCPU:
		if n, err := r.CPUNumber(); err == nil {
			return fault.CPU(n)
		}
	}
	return r
}

func (e *Engine) levels(r fault.Resource) []Level {
	rules := &e.cfg.Rules
	now := e.now
	switch r.Kind() {
	case fault.KindPage:
		pfn, err := r.PFN()
		if err != nil {
			return nil
		}
		_, pt := e.pageTripped[pfn]
		_, ut := e.uePages[pfn]
		return []Level{
			{Rule: RulePage, Count: e.page.level(pfn, now), Threshold: e.page.threshold, Window: rules.Page.Window, Tripped: pt},
			{Rule: RuleUncorrected, Threshold: 1, Tripped: ut},
		}
	case fault.KindDIMM:
		k, ok := parseDIMM(r)
		if !ok {
			return nil
		}
		_, t := e.dimmTripped[k]
		return []Level{
			{Rule: RuleDIMM, Count: e.dimmErrors.level(k, now), Threshold: e.dimmErrors.threshold, Window: rules.DIMM.Window, Tripped: t},
			{Rule: RuleDIMM + "-pages", Count: uint64(e.dimmPages.level(k, now)), Threshold: uint64(rules.DIMM.DistinctPages), Window: rules.DIMM.Window, Tripped: t},
		}
	case fault.KindRow:
		key := strings.TrimPrefix(string(r), fault.KindRow+":")
		_, t := e.rowTripped[key]
		return []Level{{Rule: RuleRow + "-pages", Count: uint64(e.rowPages.level(key, now)), Threshold: uint64(rules.Row.DistinctPages), Window: rules.Row.Window, Tripped: t}}
	case fault.KindCPU:
		n, err := r.CPUNumber()
		if err != nil {
			return nil
		}
		_, ct := e.cpuTripped[n]
		return []Level{
			{Rule: RuleCPU, Count: e.cpu.level(n, now), Threshold: e.cpu.threshold, Window: rules.CPU.Window, Tripped: ct},
			e.cacheLevel(r),
		}
	case fault.KindSocket:
		if _, err := strconv.Atoi(strings.TrimPrefix(string(r), fault.KindSocket+":")); err != nil {
			return nil
		}
		return []Level{e.cacheLevel(r)}
	case fault.KindMachine:
		return []Level{{Rule: RuleStorm, Count: e.storm.rate.sum(now), Threshold: e.storm.limit, Window: rules.Storm.Over, Tripped: e.storm.active}}
	}
	return nil
}

func (e *Engine) cacheLevel(r fault.Resource) Level {
	_, t := e.cacheTripped[r]
	return Level{Rule: RuleCache, Count: e.cache.level(r, e.now), Threshold: e.cache.threshold, Window: e.cfg.Rules.CPU.Window, Tripped: t}
}

// Reset re-arms every rule for r after a repair or acquittal: its counts
// start from zero and a new case can open. Reset(fault.Machine) also ends a
// storm (a new one opens if the rate is still above the limit).
func (e *Engine) Reset(r fault.Resource) {
	switch r.Kind() {
	case fault.KindPage:
		if pfn, err := r.PFN(); err == nil {
			delete(e.pageTripped, pfn)
			delete(e.uePages, pfn)
			e.page.forget(pfn)
		}
	case fault.KindDIMM:
		if k, ok := parseDIMM(r); ok {
			delete(e.dimmTripped, k)
			e.dimmErrors.forget(k)
			e.dimmPages.forget(k)
		}
	case fault.KindRow:
		key := strings.TrimPrefix(string(r), fault.KindRow+":")
		delete(e.rowTripped, key)
		e.rowPages.forget(key)
	case fault.KindCPU:
		if n, err := r.CPUNumber(); err == nil {
			delete(e.cpuTripped, n)
			e.cpu.forget(n)
		}
	case fault.KindMachine:
		e.storm.active, e.storm.caseID, e.storm.below = false, "", false
	}
	delete(e.cacheTripped, r)
	e.cache.forget(r)
	delete(e.ueOthers, r)
}

// Stats is the engine's state for metrics and `status`.
type Stats struct {
	Events     uint64 // events observed
	Storming   bool
	StormCases int
	Rules      []RuleStats
}

// RuleStats describes one rate table. Expired counts keys forgotten because
// their errors left the window; Evicted counts keys forgotten early because
// the table reached engine.max_tracked (a sign of a storm over very many
// resources).
type RuleStats struct {
	Rule    string
	Tracked int
	Tripped int
	Expired uint64
	Evicted uint64
}

// Snapshot returns the engine's counters.
func (e *Engine) Snapshot() Stats {
	stat := func(rule string, l *lru[uint64], tripped int) RuleStats {
		return RuleStats{Rule: rule, Tracked: l.len(), Tripped: tripped, Expired: l.expired, Evicted: l.evicted}
	}
	return Stats{
		Events: e.events, Storming: e.storm.active, StormCases: e.stormCase,
		Rules: []RuleStats{
			stat(RulePage, &e.page.keys, len(e.pageTripped)),
			{Rule: RuleDIMM, Tracked: e.dimmErrors.keys.len(), Tripped: len(e.dimmTripped),
				Expired: e.dimmErrors.keys.expired, Evicted: e.dimmErrors.keys.evicted},
			{Rule: RuleDIMM + "-pages", Tracked: e.dimmPages.keys.len(), Tripped: len(e.dimmTripped),
				Expired: e.dimmPages.keys.expired, Evicted: e.dimmPages.keys.evicted},
			{Rule: RuleRow, Tracked: e.rowPages.keys.len(), Tripped: len(e.rowTripped),
				Expired: e.rowPages.keys.expired, Evicted: e.rowPages.keys.evicted},
			{Rule: RuleCPU, Tracked: e.cpu.keys.len(), Tripped: len(e.cpuTripped),
				Expired: e.cpu.keys.expired, Evicted: e.cpu.keys.evicted},
			{Rule: RuleCache, Tracked: e.cache.keys.len(), Tripped: len(e.cacheTripped),
				Expired: e.cache.keys.expired, Evicted: e.cache.keys.evicted},
			{Rule: RuleUncorrected, Tripped: len(e.uePages) + len(e.ueOthers)},
		},
	}
}
