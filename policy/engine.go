package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// Decision is a newly opened case and what to isolate for it. Targets is
// empty for cases that only alert (replace DIMM, shared cache, storm).
type Decision struct {
	Case    fault.Case
	Targets []fault.Resource
}

// Rule names, as written in Case.Rule and in metrics.
const (
	RulePage        = "page"
	RuleDIMM        = "dimm"
	RuleRow         = "row"
	RuleCPU         = "cpu"
	RuleCache       = "cache" // cache errors a CPU offline cannot fix: alert only
	RuleUncorrected = "uncorrected"
	RuleStorm       = "storm"
)

// Engine applies the rules to events. It is NOT safe for concurrent use:
// the daemon feeds it from one goroutine (or under one lock), and Levels,
// Snapshot, Reset and Tick must be called the same way.
//
// Time: windows use ev.Received, measured from the first event the engine
// saw, so the monotonic clock reading is used when the times carry one
// (live events) and wall time otherwise (replay).
type Engine struct {
	cfg      Config
	evidence int

	started bool
	epoch   time.Time
	now     int64
	events  uint64
	log     evidenceLog

	page        *serdTable[uint64]
	pageTripped map[uint64]struct{}
	// pageWhy ends every page case's summary: " within 24h (threshold
	// 2): soft offline the page". It is made once, not on the way from
	// the deciding error to its isolation.
	pageWhy string

	dimmErrors  *serdTable[dimmKey]
	dimmPages   *distinctTable[dimmKey]
	dimmTripped map[dimmKey]struct{}

	rowPages   *distinctTable[string]
	rowTripped map[string]struct{}

	cpu          *serdTable[int]
	cpuTripped   map[int]struct{}
	cache        *serdTable[fault.Resource]
	cacheTripped map[fault.Resource]struct{}

	uePages   map[uint64]struct{}
	ueOthers  map[fault.Resource]struct{}
	storm     stormState
	stormCase int // storm cases opened
	// hot follows the resources closest to tripping, for metrics.
	hot hot
	// nextID is a case ID drawn on a record that decided nothing, for the
	// next case: drawing one (random bits, UUID text) is then not on the
	// way from a deciding error to its isolation, where under emulation it
	// cost a tenth of the diagnosis.
	nextID string
}

type dimmKey struct {
	mc    int
	label string
}

// NewEngine builds an engine for cfg (nil means Defaults). The engine keeps
// a copy: later changes to cfg do not affect it.
func NewEngine(cfg *Config) *Engine {
	if cfg == nil {
		cfg = Defaults()
	}
	r, maxKeys := cfg.Rules, max(cfg.Engine.MaxTracked, 1)
	return &Engine{
		cfg:          *cfg,
		evidence:     min(max(cfg.Engine.Evidence, 1), maxEvidence),
		log:          newEvidenceLog(),
		page:         newSERD[uint64](r.Page.Threshold, r.Page.Window, maxSlotsPage, maxKeys, newU64Index()),
		pageTripped:  map[uint64]struct{}{},
		pageWhy:      " within " + formatDuration(r.Page.Window) + " (threshold " + strconv.Itoa(r.Page.Threshold) + "): soft offline the page",
		dimmErrors:   newSERD[dimmKey](r.DIMM.Errors, r.DIMM.Window, maxSlotsOther, maxKeys, nil),
		dimmPages:    newDistinct[dimmKey](r.DIMM.DistinctPages, r.DIMM.Window, maxKeys),
		dimmTripped:  map[dimmKey]struct{}{},
		rowPages:     newDistinct[string](r.Row.DistinctPages, r.Row.Window, maxKeys),
		rowTripped:   map[string]struct{}{},
		cpu:          newSERD[int](r.CPU.Threshold, r.CPU.Window, maxSlotsOther, maxKeys, nil),
		cpuTripped:   map[int]struct{}{},
		cache:        newSERD[fault.Resource](r.CPU.Threshold, r.CPU.Window, maxSlotsOther, maxKeys, nil),
		cacheTripped: map[fault.Resource]struct{}{},
		uePages:      map[uint64]struct{}{},
		ueOthers:     map[fault.Resource]struct{}{},
		storm:        newStormState(r.Storm),
	}
}

// clock converts a time to engine nanoseconds.
func (e *Engine) clock(t time.Time) int64 {
	if !e.started {
		e.started, e.epoch = true, t
	}
	return int64(t.Sub(e.epoch))
}

// usablePage reports whether the event names one 4 KiB page.
func usablePage(ev *fault.Event) bool { return ev.AddrValid && ev.AddrLSB <= 12 }

// Observe feeds one event to every rule it matches and returns the cases it
// opens (usually none; nil then, without allocating).
func (e *Engine) Observe(ev *fault.Event) []Decision {
	return e.ObserveParts(ev, AllParts)
}

// Parts says which rules an event feeds. The count-once stage decides it:
// a record of an error already counted feeds only the rules keyed on what
// it adds (the DIMM label an mc_event brings to an mce_record's error).
type Parts struct {
	// Error: new errors (storm rate, CPU rules, uncorrected).
	Error bool
	// Page: the page rule, and the DIMM's distinct pages.
	Page bool
	// DIMM: the DIMM rule's error count (and its distinct pages).
	DIMM bool
	// Row: the row rule.
	Row bool
}

// AllParts feeds every rule: what a record of a new error does.
var AllParts = Parts{Error: true, Page: true, DIMM: true, Row: true}

// ObserveParts is Observe for the rules in p only.
func (e *Engine) ObserveParts(ev *fault.Event, p Parts) []Decision {
	now := e.clock(ev.Received)
	if now > e.now {
		e.now = now
	}
	if p.Error {
		e.events++
	}
	count := max(ev.Count, 1) // a zero count is a source bug; it was still an error
	seq := e.log.push(ev, now)

	var out []Decision
	corrected := ev.Severity == fault.SeverityCorrected || ev.Severity == fault.SeverityDeferred
	if corrected && p.Error {
		out = e.countStorm(ev, now, count, out)
	}
	switch {
	case ev.Class == fault.ClassMemory:
		if corrected && p.Page {
			out = e.observePage(ev, now, count, seq, out)
		} else if !corrected && (p.Error || p.Page) {
			out = e.observeUncorrected(ev, out)
		}
		if p.DIMM || p.Page {
			out = e.observeDIMM(ev, now, count, seq, p.DIMM, out)
		}
		if p.Row {
			out = e.observeRow(ev, now, seq, out)
		}
	case !p.Error:
	case corrected && (ev.Class == fault.ClassCache || ev.Class == fault.ClassTLB):
		out = e.observeCache(ev, now, count, seq, out)
	case !corrected && ev.Class == fault.ClassCache:
		out = e.observeUncorrected(ev, out)
	}
	if len(out) == 0 && e.nextID == "" {
		e.nextID = fault.NewCaseID()
	}
	return out
}

func (e *Engine) observePage(ev *fault.Event, now int64, count uint32, seq uint32, out []Decision) []Decision {
	if !e.cfg.Rules.Page.Enabled || !usablePage(ev) {
		return out
	}
	pfn := ev.PFN()
	if _, done := e.pageTripped[pfn]; done {
		return out
	}
	tripped, level, seqs := e.page.add(pfn, now, count, seq, nil)
	if !tripped {
		e.hot.page.note(pfn, level, now, now-e.page.window)
		return out
	}
	e.hot.page.drop(pfn)
	e.pageTripped[pfn] = struct{}{}
	r := fault.Page(pfn)
	c := e.newCase(ev, RulePage, fault.DiagSoftOfflinePage, r, memoryFRU(ev))
	// Appended, not formatted (see fault.Hex).
	c.Summary = strconv.FormatUint(level, 10) + " corrected memory errors on page " + fault.Hex(pfn) + e.pageWhy
	c.Evidence = e.log.collect(seqs, e.evidence, onPage(pfn, e.cfg.Rules.Page.Window),
		e.standIn(ev, func(evidenceRef) uint64 { return pfn }, ""))
	c.FRU = labelFromEvidence(c.FRU, ev, c.Evidence)
	if ev.LocatedBy != "" && ev.LocatedBy != fault.LocatedByMCA && ev.DIMMLabel == c.FRU {
		c.Summary += " (DIMM located by " + ev.LocatedBy + ")"
	}
	return append(out, Decision{Case: c, Targets: []fault.Resource{r}})
}

func (e *Engine) observeUncorrected(ev *fault.Event, out []Decision) []Decision {
	if !e.cfg.Rules.Uncorrected.Enabled {
		return out
	}
	if usablePage(ev) {
		pfn := ev.PFN()
		if _, done := e.uePages[pfn]; done {
			return out
		}
		e.uePages[pfn] = struct{}{}
		r := fault.Page(pfn)
		c := e.newCase(ev, RuleUncorrected, fault.DiagHardOfflinePage, r, memoryFRU(ev))
		c.Summary = ev.Severity.String() + " " + ev.Class.String() + " error at " + fault.Hex(ev.PhysAddr) +
			" (page " + fault.Hex(pfn) + "): hard offline the page now"
		c.Evidence = []fault.Evidence{fault.EvidenceOf(ev)}
		return append(out, Decision{Case: c, Targets: []fault.Resource{r}})
	}
	// Without an address there is nothing to isolate, but a human must know.
	r, fru := cpuResource(ev)
	if _, done := e.ueOthers[r]; done {
		return out
	}
	e.ueOthers[r] = struct{}{}
	c := e.newCase(ev, RuleUncorrected, fault.DiagAlertOnly, r, fru)
	c.Summary = fmt.Sprintf("%s %s error without a usable address on %s: nothing to isolate, check the hardware",
		ev.Severity, ev.Class, r)
	c.Evidence = []fault.Evidence{fault.EvidenceOf(ev)}
	return append(out, Decision{Case: c})
}

// observeDIMM counts errors (when errors is set: the event is the first to
// name the DIMM for them) and distinct pages against the event's DIMM.
func (e *Engine) observeDIMM(ev *fault.Event, now int64, count uint32, seq uint32, errors bool, out []Decision) []Decision {
	rule := &e.cfg.Rules.DIMM
	if !rule.Enabled || ev.DIMMLabel == "" {
		return out
	}
	k := dimmKey{mc: ev.MC, label: ev.DIMMLabel}
	if _, done := e.dimmTripped[k]; done {
		return out
	}
	var (
		tripped bool
		level   uint64
		seqs    []evidenceRef
	)
	if errors {
		tripped, level, seqs = e.dimmErrors.add(k, now, count, seq, nil)
		if !tripped {
			e.hot.dimmErrors.note(k, level, now, now-e.dimmErrors.window)
		}
	}
	var pages []uint64
	byPages := false
	if !tripped && usablePage(ev) {
		var n int
		tripped, n, pages, seqs = e.dimmPages.add(k, ev.PFN(), now, seq, nil)
		if !tripped {
			e.hot.dimmPages.note(k, uint64(n), now, now-e.dimmPages.window)
		}
		byPages = true
	}
	if !tripped {
		return out
	}
	e.hot.dimmErrors.drop(k)
	e.hot.dimmPages.drop(k)
	// Formatted only on a trip: every EDAC record passes here.
	why := fmt.Sprintf("%d errors within %s (threshold %d)", level, formatDuration(rule.Window), rule.Errors)
	if byPages {
		why = fmt.Sprintf("%d distinct failing pages within %s (threshold %d)", len(pages), formatDuration(rule.Window), rule.DistinctPages)
	}
	e.dimmTripped[k] = struct{}{}
	e.dimmErrors.forget(k)
	e.dimmPages.forget(k)
	r := dimmResource(k)
	c := e.newCase(ev, RuleDIMM, fault.DiagReplaceDIMM, r, k.label)
	c.Summary = fmt.Sprintf("DIMM %s: %s: replace it", k.label, why)
	if ev.LocatedBy != "" {
		c.Summary += " (located by " + ev.LocatedBy + ")"
	}
	page := refPage
	if !byPages {
		page = nil
	}
	in := e.standIn(ev, page, "dimm="+k.label)
	c.Evidence = e.log.collect(seqs, e.evidence, evidenceQuery{window: e.cfg.Rules.DIMM.Window, match: func(x *fault.Event) bool { return x.DIMMLabel == k.label && x.MC == k.mc }},
		func(r evidenceRef) fault.Evidence { x := in(r); x.DIMM = k.label; return x })
	return append(out, Decision{Case: c})
}

func (e *Engine) observeRow(ev *fault.Event, now int64, seq uint32, out []Decision) []Decision {
	rule := &e.cfg.Rules.Row
	if !rule.Enabled || ev.Row == "" || !usablePage(ev) {
		return out
	}
	if _, done := e.rowTripped[ev.Row]; done {
		return out
	}
	tripped, n, pages, seqs := e.rowPages.add(ev.Row, ev.PFN(), now, seq, nil)
	if !tripped {
		e.hot.rowPages.note(ev.Row, uint64(n), now, now-e.rowPages.window)
		return out
	}
	e.hot.rowPages.drop(ev.Row)
	key := ev.Row
	e.rowTripped[key] = struct{}{}
	targets := make([]fault.Resource, len(pages))
	for i, p := range pages {
		targets[i] = fault.Page(p)
	}
	c := e.newCase(ev, RuleRow, fault.DiagOfflineRow, fault.Row(key), memoryFRU(ev))
	c.Also = targets
	c.Summary = fmt.Sprintf("%d distinct pages of DRAM row %s failed within %s (threshold %d): offline the row's %d known pages",
		len(pages), key, formatDuration(rule.Window), rule.DistinctPages, len(pages))
	c.Evidence = e.log.collect(seqs, e.evidence, evidenceQuery{window: rule.Window, match: func(x *fault.Event) bool { return x.Row == key }}, e.standIn(ev, refPage, "row="+key))
	c.FRU = labelFromEvidence(c.FRU, ev, c.Evidence)
	return append(out, Decision{Case: c, Targets: targets})
}

// observeCache counts corrected cache and TLB errors. Only a core-private
// bank at level L0-L2 can be fixed by offlining the CPU; a generic level or
// a shared bank is counted per CPU (or socket) and only alerts.
func (e *Engine) observeCache(ev *fault.Event, now int64, count uint32, seq uint32, out []Decision) []Decision {
	rule := &e.cfg.Rules.CPU
	if !rule.Enabled {
		return out
	}
	if ev.CPU >= 0 && ev.CoreBank && ev.CacheLevel >= 0 && ev.CacheLevel <= 2 {
		cpu := ev.CPU
		if _, done := e.cpuTripped[cpu]; done {
			return out
		}
		tripped, level, seqs := e.cpu.add(cpu, now, count, seq, nil)
		if !tripped {
			e.hot.cpu.note(cpu, level, now, now-e.cpu.window)
			return out
		}
		e.hot.cpu.drop(cpu)
		e.cpuTripped[cpu] = struct{}{}
		r, fru := fault.CPU(cpu), cpuFRU(ev)
		c := e.newCase(ev, RuleCPU, fault.DiagOfflineCPU, r, fru)
		c.Summary = fmt.Sprintf("%d corrected L%d %s errors in CPU %d's own bank within %s (threshold %d): offline the CPU and its SMT siblings",
			level, ev.CacheLevel, ev.Class, cpu, formatDuration(rule.Window), rule.Threshold)
		c.Evidence = e.log.collect(seqs, e.evidence, evidenceQuery{window: rule.Window, match: func(x *fault.Event) bool { return x.CPU == cpu && x.Class == ev.Class }},
			e.standIn(ev, nil, fmt.Sprintf("cpu=%d", cpu)))
		return append(out, Decision{Case: c, Targets: []fault.Resource{r}})
	}
	r, fru := cacheResource(ev)
	if _, done := e.cacheTripped[r]; done {
		return out
	}
	tripped, level, seqs := e.cache.add(r, now, count, seq, nil)
	if !tripped {
		e.hot.cache.note(r, level, now, now-e.cache.window)
		return out
	}
	e.hot.cache.drop(r)
	e.cacheTripped[r] = struct{}{}
	why := "a shared cache or uncore bank"
	if ev.CoreBank {
		why = "a generic cache level"
	}
	c := e.newCase(ev, RuleCache, fault.DiagAlertOnly, r, fru)
	c.Summary = fmt.Sprintf("%d corrected %s errors on %s within %s (threshold %d) from %s: offlining a CPU would not help, alert only",
		level, ev.Class, r, formatDuration(rule.Window), rule.Threshold, why)
	c.Evidence = e.log.collect(seqs, e.evidence, evidenceQuery{window: rule.Window, match: func(x *fault.Event) bool { rr, _ := cacheResource(x); return rr == r }},
		e.standIn(ev, nil, string(r)))
	return append(out, Decision{Case: c})
}

func (e *Engine) countStorm(ev *fault.Event, now int64, count uint32, out []Decision) []Decision {
	if !e.cfg.Rules.Storm.Enabled {
		return out
	}
	starts, inWindow := e.storm.count(now, uint64(count))
	if !starts {
		return out
	}
	rule := &e.cfg.Rules.Storm
	c := e.newCase(ev, RuleStorm, fault.DiagStorm, fault.Machine, "")
	c.Summary = fmt.Sprintf("corrected error storm: %d errors in %s (%.0f/s) exceed %g/s: per-event logging and alerts suppressed, engines keep counting",
		inWindow, formatDuration(rule.Over), float64(inWindow)/rule.Over.Seconds(), rule.Rate)
	c.Evidence = e.log.recent(e.evidence)
	e.storm.active, e.storm.caseID, e.storm.started, e.storm.below = true, c.ID, ev.Received, false
	e.stormCase++
	return append(out, Decision{Case: c})
}

// Storming reports whether a corrected-error storm is on: the daemon then
// suppresses per-event logs and alerts.
func (e *Engine) Storming() bool { return e.storm.active }

// Tick lets time pass without events: it ends a storm that has been quiet
// long enough (returning its end, nil otherwise) and forgets expired state.
// The daemon calls it about once a second; a storm can only end here.
func (e *Engine) Tick(now time.Time) *StormEnd {
	t := e.clock(now)
	if t > e.now {
		e.now = t
	}
	e.sweep(t)
	if !e.storm.ended(t) {
		return nil
	}
	end := &StormEnd{CaseID: e.storm.caseID, Started: e.storm.started, Ended: now}
	e.storm.active, e.storm.caseID, e.storm.below = false, "", false
	return end
}

// sweepPerTick bounds the memory released per Tick so one call stays short.
const sweepPerTick = 1 << 16

func (e *Engine) sweep(now int64) {
	r := &e.cfg.Rules
	e.page.keys.expire(now-int64(r.Page.Window), sweepPerTick)
	e.dimmErrors.keys.expire(now-int64(r.DIMM.Window), sweepPerTick)
	e.dimmPages.keys.expire(now-int64(r.DIMM.Window), sweepPerTick)
	e.rowPages.keys.expire(now-int64(r.Row.Window), sweepPerTick)
	e.cpu.keys.expire(now-int64(r.CPU.Window), sweepPerTick)
	e.cache.keys.expire(now-int64(r.CPU.Window), sweepPerTick)
}

func (e *Engine) newCase(ev *fault.Event, rule string, d fault.Diagnosis, suspect fault.Resource, fru string) fault.Case {
	id := e.nextID
	if id == "" {
		id = fault.NewCaseID()
	}
	e.nextID = ""
	return fault.Case{
		ID: id, Opened: ev.Received, Rule: rule, Diagnosis: d,
		Suspect: suspect, FRU: fru, State: fault.CaseOpen,
	}
}

// standIn makes the evidence entry of an error whose record left the
// log, from what the rule's table kept (when, how many errors, the page
// when page is given) and the deciding event's class and severity, which
// errors counted under the same key share; key names the resource when no
// page does.
func (e *Engine) standIn(ev *fault.Event, page func(evidenceRef) uint64, key string) func(evidenceRef) fault.Evidence {
	return func(r evidenceRef) fault.Evidence {
		x := fault.Evidence{Time: e.epoch.Add(time.Duration(r.at)), Severity: ev.Severity, Class: ev.Class, Count: r.n, CPU: -1, Bank: -1}
		where := key
		if page != nil {
			pfn := page(r)
			x.Addr = pfn * fault.PageSize
			where = fmt.Sprintf("page=%#x", pfn)
			if key != "" {
				where += " " + key
			}
		}
		x.Summary = fmt.Sprintf("%s %s x%d %s (its record left the engine's last %d events; the error history keeps it)",
			ev.Severity, ev.Class, r.n, where, evidenceLogSize)
		return x
	}
}

// refPage is the page a distinct-pages table kept with each error.
func refPage(r evidenceRef) uint64 { return r.pfn }

// memoryFRU names what a technician replaces for a memory error.
func memoryFRU(ev *fault.Event) string {
	switch {
	case ev.DIMMLabel != "" && ev.LocatedBy == fault.LocatedByMCA:
		// A location read from the MCA record alone: say so, a technician
		// must map it to a slot with the board's manual.
		return "DIMM at " + ev.DIMMLabel + " (from the MCA record, no EDAC label)"
	case ev.DIMMLabel != "":
		return ev.DIMMLabel
	case ev.Socket >= 0 && usablePage(ev):
		return "memory on socket " + strconv.Itoa(ev.Socket) + " at PFN " + fault.Hex(ev.PFN())
	case usablePage(ev):
		return "memory at PFN " + fault.Hex(ev.PFN())
	case ev.Socket >= 0:
		return "memory on socket " + strconv.Itoa(ev.Socket)
	}
	return "memory (location unknown)"
}

// labelFromEvidence prefers a DIMM label any evidence carries (the first
// error may have come with EDAC's label, the trigger without) to a FRU
// guessed from an address.
func labelFromEvidence(fru string, trigger *fault.Event, evidence []fault.Evidence) string {
	if trigger.DIMMLabel != "" {
		return fru
	}
	for i := len(evidence) - 1; i >= 0; i-- {
		if evidence[i].DIMM != "" {
			return evidence[i].DIMM
		}
	}
	return fru
}

// cpuFRU: the processor package is what gets replaced.
func cpuFRU(ev *fault.Event) string {
	switch {
	case ev.Socket >= 0:
		return "socket " + strconv.Itoa(ev.Socket)
	case ev.CPU >= 0:
		return "cpu " + strconv.Itoa(ev.CPU)
	}
	return "processor (location unknown)"
}

// cacheResource keys cache errors a CPU offline cannot fix: a shared bank
// belongs to the socket, a core bank of generic level to its CPU.
func cacheResource(ev *fault.Event) (fault.Resource, string) {
	if !ev.CoreBank && ev.Socket >= 0 {
		return fault.Socket(ev.Socket), cpuFRU(ev)
	}
	return cpuResource(ev)
}

func cpuResource(ev *fault.Event) (fault.Resource, string) {
	switch {
	case ev.CPU >= 0:
		return fault.CPU(ev.CPU), cpuFRU(ev)
	case ev.Socket >= 0:
		return fault.Socket(ev.Socket), cpuFRU(ev)
	}
	return fault.Machine, "machine"
}

// dimmResource names a DIMM key; a location from the MCA record alone has
// no EDAC controller and so no "mcM/" part.
func dimmResource(k dimmKey) fault.Resource {
	if k.mc < 0 {
		return fault.Resource(fault.KindDIMM + ":" + k.label)
	}
	return fault.DIMM(k.mc, k.label)
}

// parseDIMM splits "dimm:mcM/LABEL" (labels may contain '/').
func parseDIMM(r fault.Resource) (dimmKey, bool) {
	kind, v, _ := strings.Cut(string(r), ":")
	if kind != fault.KindDIMM || v == "" {
		return dimmKey{}, false
	}
	mc, label, ok := strings.Cut(v, "/")
	if !ok || !strings.HasPrefix(mc, "mc") {
		// A location from the MCA record alone: no controller.
		return dimmKey{mc: fault.Unknown, label: v}, true
	}
	n, err := strconv.Atoi(strings.TrimPrefix(mc, "mc"))
	if err != nil {
		return dimmKey{}, false
	}
	return dimmKey{mc: n, label: label}, true
}
