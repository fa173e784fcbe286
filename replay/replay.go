package replay

import (
	"fmt"
	"sort"
	"time"

	"github.com/selfprotect/selfprotect/countonce"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// decider turns events into decisions: the daemon's policy.Engine, or a
// model of another tool's algorithm (the kernel CEC).
type decider interface {
	ObserveParts(ev *fault.Event, p policy.Parts) []policy.Decision
}

// Policy is one candidate to replay.
type Policy struct {
	Name string
	// Config holds the rules the policy engine runs and the budgets every
	// action is checked against.
	Config *policy.Config
	// Sees says which events the mimicked tool can observe at all; nil
	// means every event (our daemon reads every source). raw is true for
	// raw kernel histories, where each view of an error is its own record,
	// false for traces, where each line is one error.
	Sees func(ev *fault.Event, raw bool) bool
	// Notes say what a built-in anchor approximates.
	Notes []string
	// Raw marks a tool that reads one kernel interface itself (rasdaemon
	// mc_event, mcelog and CEC the MCE path) and so sees every record of
	// its view; other policies get what the daemon's count-once stage lets
	// through when a history holds several views of one error.
	Raw bool
	// newDecider replaces the policy engine (nil: policy.NewEngine(Config)).
	newDecider func() decider
}

func (p *Policy) decider() decider {
	if p.newDecider != nil {
		return p.newDecider()
	}
	return policy.NewEngine(p.Config)
}

// Replayer feeds records to every policy. It is not safe for concurrent
// use. Records of one host must come in time order; hosts may interleave.
type Replayer struct {
	defaults HostSpec
	grouped  bool
	policies []Policy
	stats    []*PolicyReport
	hosts    map[string]*host
	order    []*host
	dimms    map[seriesKey]*dimmSeries
	last     *host
	events   uint64
	first    time.Time
	end      time.Time
}

// host is the policy-independent view of one machine plus one simulated
// machine per policy.
type host struct {
	name     string
	spec     HostSpec
	declared bool
	started  bool
	// done: with grouped traces, another host followed and this host's
	// engines were freed.
	done    bool
	last    time.Time
	uePages map[uint64]struct{}
	ueDIMMs map[dimmID]struct{}
	runs    []*run
	// raw: the host's history is a raw kernel record (several views of
	// one error), fed through stage, the daemon's count-once stage.
	raw   bool
	stage *countonce.Stage
}

type dimmID struct {
	mc    int
	label string
}

// run is one policy on one host: its decider and its simulated machine.
type run struct {
	dec decider
	m   machine
}

// New prepares a replay of policies; defaults describes hosts the trace
// does not describe.
func New(defaults HostSpec, policies ...Policy) (*Replayer, error) {
	if err := defaults.Validate(); err != nil {
		return nil, fmt.Errorf("default host: %w", err)
	}
	if len(policies) == 0 {
		return nil, fmt.Errorf("no policy to replay")
	}
	r := &Replayer{defaults: defaults, policies: policies, hosts: map[string]*host{}}
	for i := range policies {
		if policies[i].Config == nil {
			return nil, fmt.Errorf("policy %q has no configuration", policies[i].Name)
		}
		r.stats = append(r.stats, newPolicyReport(&policies[i]))
	}
	return r, nil
}

// Grouped declares that the trace holds each host's records in one block
// (as the generator writes them): a host's engines are freed when the next
// host starts, so memory stays bounded by one host, and a host that shows
// up again later is an error.
func (r *Replayer) Grouped() { r.grouped = true }

// Add replays one record. Errors name the record's line.
func (r *Replayer) Add(file string, rec *Record) error {
	h := r.last
	if h == nil || h.name != rec.Host {
		if r.grouped && h != nil {
			h.done = true
			for _, ru := range h.runs {
				if ru != nil {
					ru.dec = nil
				}
			}
		}
		h = r.hosts[rec.Host]
		if h != nil && h.done {
			return &LineError{File: file, Line: rec.Line, Field: "host",
				Msg: fmt.Sprintf("host %q appears again after other hosts, but the trace was declared grouped by host", rec.Host)}
		}
		if h == nil {
			h = &host{name: rec.Host, spec: r.defaults, runs: make([]*run, len(r.policies))}
			r.hosts[rec.Host] = h
			r.order = append(r.order, h)
		}
		r.last = h
	}
	if rec.IsHost {
		if h.started || h.declared {
			return &LineError{File: file, Line: rec.Line, Field: "host",
				Msg: fmt.Sprintf("host %q described twice or after its first error", rec.Host)}
		}
		h.spec, h.declared = rec.Spec, true
		return nil
	}
	ev := &rec.Event
	t := ev.Received
	if h.started && t.Before(h.last) {
		return &LineError{File: file, Line: rec.Line, Field: "time",
			Msg: fmt.Sprintf("%s is before host %q's previous record at %s: records of one host must be in time order",
				t.Format(time.RFC3339Nano), h.name, h.last.Format(time.RFC3339Nano))}
	}
	h.started, h.last = true, t
	r.events++
	if r.first.IsZero() || t.Before(r.first) {
		r.first = t
	}
	if t.After(r.end) {
		r.end = t
	}
	if ev.Class == fault.ClassMemory && (ev.Severity == fault.SeverityUncorrectedRecoverable || ev.Severity == fault.SeverityFatal) {
		r.uncorrected(h, ev)
	}
	var verdicts []countonce.Verdict
	if h.raw {
		if h.stage == nil {
			h.stage = countonce.New(countonce.Options{})
		}
		verdicts = h.stage.Observe(*ev)
	}
	if h.raw {
		for k := range verdicts {
			if v := &verdicts[k]; v.New&countonce.FacetDIMM != 0 {
				r.tally(h, &v.Event, v.Event.Count)
			}
		}
	} else {
		r.tally(h, ev, ev.Count)
	}
	for i := range r.policies {
		if !h.raw || r.policies[i].Raw {
			r.feed(h, i, ev, policy.AllParts)
			continue
		}
		r.feedVerdicts(h, i, verdicts)
	}
	return nil
}

func (r *Replayer) feedVerdicts(h *host, i int, verdicts []countonce.Verdict) {
	for k := range verdicts {
		v := &verdicts[k]
		r.feed(h, i, &v.Event, policy.Parts{
			Error: v.New&countonce.FacetError != 0,
			Page:  v.New&countonce.FacetPage != 0,
			DIMM:  v.New&countonce.FacetDIMM != 0,
			Row:   v.New&countonce.FacetRow != 0,
		})
	}
}

// feed gives one event (or the part of it count-once let through) to
// policy i on host h and carries out its decisions.
func (r *Replayer) feed(h *host, i int, ev *fault.Event, parts policy.Parts) {
	p := &r.policies[i]
	if p.Sees != nil && !p.Sees(ev, h.raw) {
		return
	}
	ru := r.run(h, i)
	if ru.dec == nil {
		ru.dec = p.decider()
	}
	st := r.stats[i]
	if parts.Error {
		st.EventsSeen++
	}
	for _, d := range ru.dec.ObserveParts(ev, parts) {
		ru.m.apply(p.Config, st, d, ev.Received)
	}
}

// AddRaw replays one machine's raw kernel history (an imported rasdaemon
// database or mcelog log), in time order. Such a history may hold the same
// error several times (mce_record and mc_event): like the daemon, each
// host's records go through the count-once stage before the policy engine;
// anchors marked Raw read their own view unmerged. A host cannot come both
// from a trace and from a raw history.
func (r *Replayer) AddRaw(name string, recs []Record) error {
	var last *host
	for i := range recs {
		rec := &recs[i]
		h := r.hosts[rec.Host]
		if h != nil && !h.raw && h.started {
			return &LineError{File: name, Line: rec.Line, Field: "host",
				Msg: fmt.Sprintf("host %q already has records from a trace; a raw history must be a host of its own", rec.Host)}
		}
		if h == nil {
			h = &host{name: rec.Host, spec: r.defaults, runs: make([]*run, len(r.policies)), raw: true}
			r.hosts[rec.Host] = h
			r.order = append(r.order, h)
		}
		h.raw = true
		if last != nil && last != h {
			r.flush(last)
		}
		last = h
		if err := r.Add(name, rec); err != nil {
			return err
		}
	}
	if last != nil {
		r.flush(last)
	}
	return nil
}

// flush lets the count-once stage settle what it still holds (EDAC counter
// deltas waiting for their mc_event) at the end of a host's history.
func (r *Replayer) flush(h *host) {
	if h.stage == nil {
		return
	}
	verdicts := h.stage.Flush(h.last.Add(24 * time.Hour))
	for i := range r.policies {
		if !r.policies[i].Raw {
			r.feedVerdicts(h, i, verdicts)
		}
	}
}

func (r *Replayer) run(h *host, i int) *run {
	ru := h.runs[i]
	if ru == nil {
		ru = &run{m: newMachine(h.spec)}
		h.runs[i] = ru
	}
	return ru
}

// uncorrected scores every policy on a memory UE (did it retire the page or
// flag the DIMM first?), then lets the kernel poison the page as its
// memory-failure handler does live, whatever the policy.
func (r *Replayer) uncorrected(h *host, ev *fault.Event) {
	t := ev.Received
	page := ev.AddrValid && ev.AddrLSB <= 12
	dimm := dimmID{mc: ev.MC, label: ev.DIMMLabel}
	if page {
		pfn := ev.PFN()
		if h.uePages == nil {
			h.uePages = map[uint64]struct{}{}
		}
		if _, seen := h.uePages[pfn]; !seen {
			h.uePages[pfn] = struct{}{}
			for i, st := range r.stats {
				st.UEPages++
				ru := h.runs[i]
				if ru == nil {
					continue
				}
				if at, ok := ru.m.retiredAt(pfn); ok {
					st.ProtectedByPage++
					st.UELead = append(st.UELead, t.Sub(at))
				} else if at, ok := ru.m.flagged[dimm]; ok && dimm.label != "" {
					st.ProtectedByDIMM++
					st.UELead = append(st.UELead, t.Sub(at))
				}
			}
		}
	}
	if dimm.label != "" {
		if h.ueDIMMs == nil {
			h.ueDIMMs = map[dimmID]struct{}{}
		}
		if _, seen := h.ueDIMMs[dimm]; !seen {
			h.ueDIMMs[dimm] = struct{}{}
			r.series(h, dimm).ue = t
			for i, st := range r.stats {
				st.DIMMsWithUE++
				if ru := h.runs[i]; ru != nil {
					if at, ok := ru.m.flagged[dimm]; ok {
						st.DIMMsFlaggedBeforeUE++
						st.DIMMLead = append(st.DIMMLead, t.Sub(at))
					}
				}
			}
		}
	}
	if page {
		for i := range r.policies {
			r.run(h, i).m.poisonByKernel(ev.PFN(), t)
		}
	}
}

// Isolated lists what policy i took out of service on host: the pages it
// retired (not those the kernel poisoned on a UE) and the CPUs it
// offlined, sorted. With grouped traces it still answers for past hosts.
func (r *Replayer) Isolated(i int, hostName string) []fault.Resource {
	h := r.hosts[hostName]
	if h == nil || i < 0 || i >= len(h.runs) || h.runs[i] == nil {
		return nil
	}
	m := &h.runs[i].m
	var out []fault.Resource
	for _, pfn := range m.own {
		out = append(out, fault.Page(pfn))
	}
	for cpu, off := range m.offline {
		if off {
			out = append(out, fault.CPU(cpu))
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// Report summarises the replay so far.
func (r *Replayer) Report() *Report {
	rep := &Report{Hosts: len(r.order), Events: r.events, From: r.first, To: r.end, TopDIMMs: r.topDIMMs(5)}
	for _, h := range r.order {
		rep.TotalPages += h.spec.TotalPages()
	}
	for i, st := range r.stats {
		s := *st
		s.Cases = copyMap(st.Cases)
		s.Refusals = copyMap(st.Refusals)
		s.UELead = sortedDurations(st.UELead)
		s.DIMMLead = sortedDurations(st.DIMMLead)
		for _, h := range r.order {
			ru := h.runs[i]
			if ru == nil {
				continue
			}
			if pct := 100 * float64(ru.m.byPolicy) / float64(h.spec.TotalPages()); pct > s.MaxHostRetiredPercent {
				s.MaxHostRetiredPercent, s.MaxHost = pct, h.name
			}
		}
		if rep.TotalPages > 0 {
			s.RetiredPercent = 100 * float64(s.PagesRetired) / float64(rep.TotalPages)
		}
		rep.Policies = append(rep.Policies, s)
	}
	return rep
}

func copyMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedDurations(d []time.Duration) []time.Duration {
	out := append([]time.Duration(nil), d...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
