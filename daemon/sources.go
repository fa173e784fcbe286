package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/countonce"
	"github.com/selfprotect/selfprotect/ebpfsource"
	"github.com/selfprotect/selfprotect/edac"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/mce"
	"github.com/selfprotect/selfprotect/tracefs"
)

// SourceState is the one state an event source is in.
type SourceState string

const (
	// SourceArmed: reading events.
	SourceArmed SourceState = "armed"
	// SourceStandby: usable, but a preferred source of its group reads
	// the same records; it takes over if that one stops.
	SourceStandby SourceState = "standby"
	// SourceUnavailable: not there now (Detail says why); tried again
	// every sourceRetry.
	SourceUnavailable SourceState = "unavailable"
	// SourceBroken: failed to open for another reason than being
	// unavailable, or died while reading; not retried, status is
	// degraded.
	SourceBroken SourceState = "broken"
)

// sourceStates lists every state, for the metric.
var sourceStates = []SourceState{SourceArmed, SourceStandby, SourceUnavailable, SourceBroken}

// SourceChange is one transition of one source, handed to the daemon's
// source-change hook (logged). Blind is true when after it no source of
// the group reads events.
type SourceChange struct {
	Name     string
	Group    string
	From, To SourceState
	Detail   string
	Blind    bool
}

// sourceDef is one row of the source table. Sources of one group read the
// same records (eBPF and tracefs both read the RAS tracepoints): the
// first of the group in table order that opens is used, the others stand
// by. open returns the source, a line for status, or an error:
// errors.Is(err, fault.ErrUnavailable) means fall back and retry later,
// anything else means broken. It runs on the main loop.
type sourceDef struct {
	name  string
	group string
	open  func(ctx context.Context) (fault.EventSource, string, error)
	// retry is how often an unavailable source is tried again; 0 means
	// sourceRetry.
	retry time.Duration
}

// Optional behaviour of a source, found by type assertion.
type (
	// drainer stops after delivering what it already holds: the hand-over
	// to a preferred source of its group loses nothing.
	drainer interface{ StopAfterDrain() }
	// problemReporter says what could leave it blind while it runs
	// (problem.source is filled in by the set).
	problemReporter interface{ problems() []problem }
	// counterReporter adds its counters to status.
	counterReporter interface{ addCounters(*EventCounters) }
	closer          interface{ Close() error }
	// holder opens with its in-kernel aggregation held: every record it
	// delivers is the record itself, so while another source of its group
	// delivers the same records (a hand-over, either way) they can be
	// matched one for one; an aggregate's count cannot be, nobody can tell
	// which records it stands for. The set releases the hold once no
	// hand-over involves it. ReleaseAggregation returns how many records
	// were counted in the kernel anyway while held (its ring buffer was
	// full): those are the ones a hand-over may count twice.
	holder interface {
		HoldAggregation() error
		ReleaseAggregation() (ringFull uint64, err error)
	}
	// salvager can, after its Run failed, still deliver what it collected
	// and did not send (the eBPF ring buffer and unswept counts: the probes
	// stay attached until Close). The set holds it, arms the fallback, and
	// only then salvages and closes it, so no record falls between the two.
	salvager interface {
		Salvage(ctx context.Context, out chan<- fault.Event) (events int, err error)
	}
)

// sourceTable is the daemon's sources in order of preference: eBPF, then
// tracefs for the same tracepoints, then EDAC counter polling, which runs
// beside them to catch what no record delivered. Adding a source is one
// row here.
func (d *Daemon) sourceTable() []sourceDef {
	return []sourceDef{
		// Trying costs parsing the object and the kernel's BTF (MBs), and
		// what makes eBPF unavailable (no BTF, no privilege) rarely
		// changes while we run: tracefs covers meanwhile. A test that holds
		// eBPF back (EBPFArmAfter) has it retried when it is due.
		{name: "ebpf", group: groupTracepoints, open: d.openEBPF, retry: cmp.Or(d.opts.EBPFArmAfter, 10*time.Minute)},
		{name: "tracefs", group: groupTracepoints, open: d.openTracefs},
		{name: "edac-poll", group: "edac-counters", open: d.openEDAC},
	}
}

const groupTracepoints = "tracepoints"

// sourceRetry is how often an unavailable source is tried again:
// tracefs may be mounted, or an EDAC driver loaded, after we started.
const sourceRetry = 30 * time.Second

// handoverGrace is how long after the old source stopped its records may
// still meet their twins from the new one in the main loop.
const handoverGrace = 5 * time.Second

// sourceSet runs the table. The main loop opens, hands over and reads the
// states; each source's goroutine only records how its Run ended.
type sourceSet struct {
	ctx      context.Context
	out      chan<- fault.Event
	log      logrus.FieldLogger
	now      func() time.Time
	onChange func(SourceChange)
	wg       sync.WaitGroup
	// changed wakes the main loop when a source stopped, so a standby
	// takes over at once rather than at the next health check.
	changed chan struct{}
	// overlap de-duplicates records during a hand-over (main loop only).
	overlap *overlap
	// overlapFor keeps a fallback reading this long after the preferred
	// source armed (Options.HandoverAfter; tests only).
	overlapFor time.Duration

	mu      sync.Mutex // guards every entry's fields below def
	entries []*sourceEntry
}

type sourceEntry struct {
	def     sourceDef
	lastTry time.Time // main loop only

	state    SourceState
	detail   string
	src      fault.EventSource
	cancel   context.CancelFunc
	done     chan struct{} // closed when Run returned
	stopping bool          // asked to stand down for a preferred source
	// stoppedAt is when a standing-down source's Run returned (zero
	// until then); the main loop ends the overlap from it.
	stoppedAt time.Time
	// armedAt is when it last opened.
	armedAt time.Time
	// stats is the last source that ran, kept for its counters.
	stats counterReporter
	// held: opened with its aggregation held (a holder), not released yet.
	held bool
	// salvage is a source whose Run failed, still attached, waiting for
	// its group's fallback to arm before it delivers what it holds.
	salvage fault.EventSource
}

func newSourceSet(ctx context.Context, out chan<- fault.Event, defs []sourceDef, log logrus.FieldLogger, now func() time.Time, onChange func(SourceChange)) *sourceSet {
	s := &sourceSet{ctx: ctx, out: out, log: log, now: now, onChange: onChange, changed: make(chan struct{}, 1)}
	for _, def := range defs {
		s.entries = append(s.entries, &sourceEntry{def: def, state: SourceUnavailable, detail: "not tried yet"})
	}
	return s
}

// startSources opens what this machine offers and returns the set; with
// nothing at all the daemon keeps running, not armed, so `status` says
// why.
func (d *Daemon) startSources(ctx context.Context, out chan<- fault.Event) *sourceSet {
	set := newSourceSet(ctx, out, d.sourceTable(), d.log, d.now, d.sourceChanged)
	set.overlapFor = d.opts.HandoverAfter
	set.refresh()
	return set
}

// sourceChanged is the one place a source's transition surfaces in the
// log. Alerts do not hang off it: it runs on the source goroutines too and
// sees neither what a running source reports about itself nor the whole
// table; the health check that follows each change (sourceSet.changed)
// reads the table's typed states instead (sourceSet.problems).
func (d *Daemon) sourceChanged(c SourceChange) {
	l := d.log.WithFields(logrus.Fields{"source": c.Name, "from": c.From, "to": c.To})
	if c.Detail != "" {
		l = l.WithField("detail", c.Detail)
	}
	switch {
	case c.To == SourceBroken:
		l.Error("event source broken")
	case c.Blind && c.Group == groupTracepoints:
		l.Error("no source reads the RAS tracepoints: hardware errors are not watched")
	case c.To == SourceArmed:
		l.Info("event source armed")
	default:
		l.Info("event source state")
	}
}

// set changes e's state (caller holds s.mu) and returns the change to
// report, or nil.
func (s *sourceSet) set(e *sourceEntry, state SourceState, detail string) *SourceChange {
	if e.state == state && e.detail == detail {
		return nil
	}
	c := &SourceChange{Name: e.def.name, Group: e.def.group, From: e.state, To: state, Detail: detail}
	e.state, e.detail = state, detail
	c.Blind = true
	for _, o := range s.entries {
		if o.def.group == e.def.group && o.state == SourceArmed {
			c.Blind = false
		}
	}
	// An unavailable source retried with the same result is not news;
	// a new reason is.
	return c
}

func (s *sourceSet) report(changes []*SourceChange) {
	if s.onChange == nil {
		return
	}
	for _, c := range changes {
		if c != nil {
			s.onChange(*c)
		}
	}
}

// refresh runs on the main loop: it records sources that stopped, opens
// what is due (an uncovered standby at once, an unavailable source every
// sourceRetry) and hands over from a fallback to a preferred source that
// just opened.
func (s *sourceSet) refresh() {
	now := s.now()
	s.endOverlap(now)
	for i, e := range s.entries {
		s.mu.Lock()
		state, running := e.state, e.done != nil
		better := s.betterArmed(i)
		s.mu.Unlock()
		if running || state == SourceBroken {
			continue
		}
		if better != "" {
			s.mu.Lock()
			c := s.set(e, SourceStandby, better+" reads these records")
			s.mu.Unlock()
			s.report([]*SourceChange{c})
			continue
		}
		if state == SourceUnavailable && !e.lastTry.IsZero() && now.Sub(e.lastTry) < cmp.Or(e.def.retry, sourceRetry) {
			continue
		}
		e.lastTry = now
		s.open(e)
	}
	s.handOver()
	s.salvageDead()
	s.releaseHolds()
}

// betterArmed names an armed source of e's group ahead of entry i, or ""
// (caller holds s.mu).
func (s *sourceSet) betterArmed(i int) string {
	for _, o := range s.entries[:i] {
		if o.def.group == s.entries[i].def.group && o.state == SourceArmed && !o.stopping {
			return o.def.name
		}
	}
	return ""
}

func (s *sourceSet) open(e *sourceEntry) {
	src, detail, err := e.def.open(s.ctx)
	if err != nil {
		state, detail := SourceBroken, err.Error()
		if errors.Is(err, fault.ErrUnavailable) {
			// The state already says it.
			state, detail = SourceUnavailable, strings.TrimPrefix(detail, fault.ErrUnavailable.Error()+": ")
		}
		s.mu.Lock()
		c := s.set(e, state, detail)
		s.mu.Unlock()
		s.report([]*SourceChange{c})
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	s.mu.Lock()
	e.src, e.cancel, e.done, e.stopping, e.stoppedAt, e.armedAt = src, cancel, done, false, time.Time{}, s.now()
	if r, ok := src.(counterReporter); ok {
		e.stats = r
	}
	_, e.held = src.(holder)
	c := s.set(e, SourceArmed, detail)
	s.mu.Unlock()
	s.report([]*SourceChange{c})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := src.Run(ctx, s.out)
		// A source that died (not stood down, not stopped with the
		// daemon) and can salvage stays attached: its records from now
		// on are held out of aggregation, and salvageDead delivers them
		// once the fallback reads too.
		_, salvage := src.(salvager)
		salvage = salvage && s.ctx.Err() == nil && !e.stopping
		if h, ok := src.(holder); ok && salvage {
			if herr := h.HoldAggregation(); herr != nil {
				s.log.WithError(herr).WithField("source", e.def.name).Warn("holding the dead source's aggregation; a hand-over in a storm may count some records twice")
			}
		}
		if cl, ok := src.(closer); ok && !salvage {
			_ = cl.Close()
		}
		s.mu.Lock()
		if salvage {
			e.salvage = src
		}
		e.held = false
		var c *SourceChange
		switch {
		case s.ctx.Err() != nil:
			// The daemon is stopping: the state no longer matters.
		case e.stopping:
			e.stoppedAt = s.now()
			c = s.set(e, SourceStandby, "handed over to a preferred source")
		case err != nil:
			c = s.set(e, SourceBroken, err.Error())
		default:
			c = s.set(e, SourceBroken, "stopped unexpectedly")
		}
		e.done, e.cancel, e.src = nil, nil, nil
		s.mu.Unlock()
		cancel()
		close(done)
		s.report([]*SourceChange{c})
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}()
}

// handOver stops every running source that a preferred source of its
// group now covers. A source that can drain delivers what it holds first;
// records both read meanwhile are de-duplicated (overlap).
func (s *sourceSet) handOver() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.entries {
		if e.state != SourceArmed || e.stopping || e.done == nil {
			continue
		}
		better := s.betterArmed(i)
		if better == "" {
			continue
		}
		if s.overlap == nil {
			s.overlap = newOverlap()
		}
		s.overlap.watch(e)
		s.overlap.take(better)
		if s.overlapFor > 0 && s.now().Sub(s.armedAt(better)) < s.overlapFor {
			continue // both read, matched, until the test's overlap is over
		}
		e.stopping = true
		if dr, ok := e.src.(drainer); ok {
			dr.StopAfterDrain()
		} else {
			e.cancel()
		}
		s.log.WithFields(logrus.Fields{"from": e.def.name, "to": better}).Info("handing over to the preferred source; records both deliver meanwhile are counted once")
	}
}

// armedAt is when the named source last opened (caller holds s.mu).
func (s *sourceSet) armedAt(name string) time.Time {
	for _, e := range s.entries {
		if e.def.name == name {
			return e.armedAt
		}
	}
	return time.Time{}
}

// salvageDead delivers what a dead source still holds, then closes it. It
// runs after refresh opened what it could: when a source of the dead one's
// group now reads (the fallback armed), the two read the same records from
// that moment until the dead one is closed, and the overlap counts those
// once, as in a hand-over the other way; the dead source's records from
// before (its ring buffer, its unswept counts) come only through it. That
// is exact: the dead source was held before the fallback opened, so what
// it aggregated fired before the fallback's probe was registered, and a
// tracepoint call reads its list of probes once, as it starts.
func (s *sourceSet) salvageDead() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		if e.salvage == nil || e.done != nil {
			continue
		}
		src := e.salvage
		e.salvage = nil
		var covering []string
		for _, o := range s.entries {
			if o != e && o.def.group == e.def.group && o.state == SourceArmed && !o.stopping {
				covering = append(covering, o.def.name)
			}
		}
		if len(covering) > 0 {
			if s.overlap == nil {
				s.overlap = newOverlap()
			}
			s.overlap.watch(e)
			for _, name := range covering {
				s.overlap.take(name)
			}
		}
		done := make(chan struct{})
		e.done, e.stoppedAt = done, time.Time{}
		s.log.WithFields(logrus.Fields{"source": e.def.name, "covered by": strings.Join(covering, ",")}).
			Info("delivering what the dead source still holds; records both deliver meanwhile are counted once")
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			n, err := src.(salvager).Salvage(s.ctx, s.out)
			var ringFull uint64
			if h, ok := src.(holder); ok {
				ringFull, _ = h.ReleaseAggregation()
			}
			if cl, ok := src.(closer); ok {
				_ = cl.Close()
			}
			l := s.log.WithField("source", e.def.name)
			l.WithField("events", n).Info("delivered what the dead source still held")
			if err != nil {
				l.WithError(err).Error("the dead source's remaining records could not all be read: some are lost")
			}
			if ringFull > 0 {
				l.WithField("records", ringFull).Warn("records found the eBPF ring buffer full while it was held: counted from the kernel's totals, and any the fallback also delivered counted twice")
			}
			s.mu.Lock()
			e.done, e.stoppedAt = nil, s.now()
			s.mu.Unlock()
			close(done)
			select {
			case s.changed <- struct{}{}:
			default:
			}
		}()
	}
}

// releaseHolds lets every held source aggregate once no hand-over is on.
// A hand-over's overlap ends handoverGrace after the source standing down
// stopped; tracefs removes its instance as it stops, and the kernel waits
// there for every tracepoint call in flight to finish
// (event_trace_del_tracer: tracepoint_synchronize_unregister), so no
// record tracefs delivered can still be in a probe that would count it
// now.
func (s *sourceSet) releaseHolds() {
	if s.overlap != nil {
		return
	}
	type rel struct {
		name string
		h    holder
	}
	var rs []rel
	s.mu.Lock()
	for _, e := range s.entries {
		if e.held && e.state == SourceArmed && e.src != nil {
			e.held = false
			rs = append(rs, rel{e.def.name, e.src.(holder)})
		}
	}
	s.mu.Unlock()
	for _, r := range rs {
		l := s.log.WithField("source", r.name)
		n, err := r.h.ReleaseAggregation()
		if err != nil {
			l.WithError(err).Warn("releasing in-kernel aggregation; records keep coming one by one")
			continue
		}
		if n > 0 {
			l.WithField("records", n).Warn("records found the eBPF ring buffer full during the hand-over: counted from the kernel's totals, and any tracefs also delivered counted twice")
		}
	}
}

// endOverlap drops the de-duplication once every source that stood down
// has stopped and handoverGrace has passed.
func (s *sourceSet) endOverlap(now time.Time) {
	if s.overlap == nil {
		return
	}
	s.mu.Lock()
	ended := s.overlap.ended(now)
	s.mu.Unlock()
	if ended {
		if n := s.overlap.duplicates; n > 0 {
			s.log.WithField("records", n).Info("hand-over done: records delivered by both sources were counted once")
		}
		s.overlap = nil
	}
}

// duplicate says whether ev is a record the other side of a hand-over
// already delivered (main loop only).
func (s *sourceSet) duplicate(ev *fault.Event) bool {
	if s == nil || s.overlap == nil {
		return false
	}
	return s.overlap.duplicate(ev)
}

func (s *sourceSet) names() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n []string
	for _, e := range s.entries {
		if e.state == SourceArmed {
			n = append(n, e.def.name)
		}
	}
	return strings.Join(n, ",")
}

func (s *sourceSet) status() []SourceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SourceStatus, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, SourceStatus{Name: e.def.name, State: e.state, Detail: e.detail})
	}
	return out
}

// problems lists what leaves us blind or half-blind, typed from the
// table's states: a broken source (blind), what a running source reports
// about itself (the trace instance removed or its events disabled: blind;
// ring-buffer overruns: degraded), no source reading the RAS tracepoints
// while another source runs (blind), and no source at all (unarmed).
func (s *sourceSet) problems() []problem {
	s.mu.Lock()
	var out []problem
	type running struct {
		name string
		r    problemReporter
	}
	var rs []running
	armed := map[string]bool{}
	var tracepoints []string // why each tracepoint source is not reading
	for _, e := range s.entries {
		switch e.state {
		case SourceBroken:
			out = append(out, problem{source: e.def.name, kind: alert.SourceBlind,
				text: fmt.Sprintf("source %s broken: %s", e.def.name, e.detail)})
		case SourceArmed:
			armed[e.def.group] = true
			// A source standing down for a preferred one tears its
			// instance down as it stops: the preferred source reads.
			if r, ok := e.src.(problemReporter); ok && !e.stopping {
				rs = append(rs, running{e.def.name, r})
			}
		}
		if e.def.group == groupTracepoints && e.state != SourceArmed {
			tracepoints = append(tracepoints, fmt.Sprintf("%s %s: %s", e.def.name, e.state, e.detail))
		}
	}
	s.mu.Unlock()
	for _, r := range rs {
		for _, p := range r.r.problems() {
			p.source = r.name
			out = append(out, p)
		}
	}
	switch {
	case len(armed) == 0:
		out = append(out, problem{kind: alert.Unarmed, text: "no event source is armed: hardware errors are not watched"})
	case !armed[groupTracepoints] && len(tracepoints) > 0:
		out = append(out, problem{source: groupTracepoints, kind: alert.SourceBlind,
			text: "no source reads the RAS tracepoints (" + strings.Join(tracepoints, "; ") + "): MCE and RAS records are not watched"})
	}
	return out
}

func (s *sourceSet) addCounters(c *EventCounters) {
	s.mu.Lock()
	var rs []counterReporter
	for _, e := range s.entries {
		if e.stats != nil {
			rs = append(rs, e.stats)
		}
	}
	s.mu.Unlock()
	for _, r := range rs {
		r.addCounters(c)
	}
}

func (s *sourceSet) wait() { s.wg.Wait() }

// close runs after wait: every source closed itself when its Run (or its
// salvage) returned, but for a dead one the daemon stopped before it could
// salvage.
func (s *sourceSet) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		if cl, ok := e.salvage.(closer); ok {
			_ = cl.Close()
		}
		e.salvage = nil
	}
}

// openEBPF is the preferred source: probes on the RAS tracepoints with
// in-kernel storm aggregation.
func (d *Daemon) openEBPF(context.Context) (fault.EventSource, string, error) {
	if d.opts.NoEBPF {
		return nil, "", fmt.Errorf("%w: disabled by --no-ebpf", fault.ErrUnavailable)
	}
	if wait := d.opts.EBPFArmAfter - d.now().Sub(d.started); wait > 0 {
		return nil, "", fmt.Errorf("%w: held back until %s after start by --test-ebpf-arm-after (a test of the hand-over from tracefs)",
			fault.ErrUnavailable, d.opts.EBPFArmAfter)
	}
	// Held: the set releases it at once unless it takes over from tracefs
	// (sourceSet.releaseHolds).
	src, err := ebpfsource.Open(ebpfsource.Config{
		Paths: d.opts.Paths, FS: d.opts.FS, Decoders: traceDecoders(), Log: d.log, Now: d.now, Held: true,
		TestDieAfter: d.opts.EBPFDieAfter,
	})
	if errors.Is(err, ebpfsource.ErrNotSupported) {
		return nil, "", fmt.Errorf("%w: %w", fault.ErrUnavailable, err)
	}
	if err != nil {
		return nil, "", err
	}
	return ebpfSource{Source: src, loss: &recentLoss{}, now: d.now}, "probes on " + strings.Join(src.Attached(), ","), nil
}

func traceDecoders() map[string]tracefs.Decoder {
	return map[string]tracefs.Decoder{
		"mce/mce_record":           mce.TraceDecoder,
		"ras/mc_event":             edac.TraceDecoder,
		"ras/extlog_mem_event":     edac.ExtlogDecoder,
		"ras/memory_failure_event": edac.MemoryFailureDecoder,
	}
}

// traceSource is the tracefs reader with the instance it owns.
type traceSource struct {
	*tracefs.Source
	inst *tracefs.Instance
	loss *recentLoss
	now  func() time.Time
}

func (t traceSource) problems() []problem {
	h := t.inst.Health()
	return traceProblems(h, t.loss.recent(h.Overrun+h.Dropped, t.now()))
}

func (t traceSource) Close() error { return t.inst.Close() }

func (t traceSource) addCounters(c *EventCounters) {
	st := t.Stats()
	c.Undecodable += st.Undecodable
	c.CorruptPages += st.CorruptPages
	c.TracePages += st.Pages
	c.TraceMissed += st.Missed
}

// openTracefs reads the same tracepoints through the daemon's own trace
// instance. Every failure to set it up counts as unavailable (tracefs not
// mounted yet, another tool holding it): worth retrying.
func (d *Daemon) openTracefs(context.Context) (fault.EventSource, string, error) {
	inst, err := tracefs.OpenInstance(d.opts.Paths, tracefs.Options{
		BufferSizeKB: d.opts.TraceBufferKB,
		Events:       []string{"mce/mce_record", "ras/*"},
	}, d.log)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", fault.ErrUnavailable, err)
	}
	src := tracefs.NewSource(inst, traceDecoders(), d.log, d.now)
	return traceSource{Source: src, inst: inst, loss: &recentLoss{}, now: d.now}, "instance " + inst.Dir(), nil
}

// openEDAC polls the EDAC counters beside the tracepoints.
func (d *Daemon) openEDAC(context.Context) (fault.EventSource, string, error) {
	ctrls, err := edac.ReadControllers(d.opts.Paths, d.opts.FS)
	switch {
	case errors.Is(err, edac.ErrNoEDAC):
		return nil, "", fmt.Errorf("%w: no EDAC memory controller in sysfs", fault.ErrUnavailable)
	case err != nil && len(ctrls) == 0:
		return nil, "", fmt.Errorf("%w: EDAC sysfs unreadable: %w", fault.ErrUnavailable, err)
	case err != nil:
		d.log.WithError(err).Warn("some EDAC files unreadable")
	}
	poller := edac.NewPoller(d.opts.Paths, d.opts.FS, d.log, d.now)
	if _, err := poller.Poll(); err != nil { // baseline: earlier counts are history
		d.log.WithError(err).Warn("EDAC baseline incomplete")
	}
	// The stage joins MCA locations to these DIMMs; with a driver bound it
	// keys DIMMs by EDAC label only.
	d.stage.SetLayout(layout(edac.Slots(ctrls)))
	d.mu.Lock()
	d.edacBound = true
	d.kernel.EDAC = fmt.Sprintf("bound (%d controllers)", len(ctrls))
	d.mu.Unlock()
	d.policyMu.Lock()
	interval := d.cfg.EDAC.PollInterval
	d.policyMu.Unlock()
	return edac.NewSource(poller, interval), fmt.Sprintf("%d controllers, every %s", len(ctrls), interval), nil
}

func layout(slots []edac.Slot) []countonce.Slot {
	out := make([]countonce.Slot, len(slots))
	for i, s := range slots {
		out[i] = countonce.Slot{MC: s.MC, Label: s.Label, Socket: s.Socket, Channel: s.Channel, CSRow: s.CSRow}
	}
	return out
}

// trimTime keeps timestamps readable in logs.
func trimTime(t time.Time) string { return t.Format(time.RFC3339) }
