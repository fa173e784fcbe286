// Package countonce decides what each memory-error record adds to the rate
// engines, so that every error counts exactly once whatever the kernel
// configuration (design.md §2, "each error is counted once").
//
// The same corrected DRAM error can reach us as mce:mce_record, as
// ras:mc_event (EDAC, with the DIMM label), as ras:extlog_mem_event (Intel
// eMCA firmware-first), as an EDAC counter delta, or through only some of
// them: the kernel's CEC swallows errors after mce_record and before EDAC,
// firmware-first machines have no mce_record at all. So the stage never
// waits for a record that may not come: the first record of an error
// counts at once, and a later record of the same error (another view, same
// page or same DIMM, within Window) only adds what the first could not tell
// (page, DIMM, row). Counter deltas count only what no mc_event delivered.
//
// Nothing is held back, so no isolation that is due waits for a partner.
// The stage is not safe for concurrent use: the daemon's main loop owns it.
package countonce

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// Facet is one thing about an error that a rate rule keys on.
type Facet uint8

const (
	// FacetError: the record stands for errors not counted before (storm
	// rate, uncorrected rule, error totals).
	FacetError Facet = 1 << iota
	// FacetPage: a usable 4 KiB page (page rule, DIMM distinct pages).
	FacetPage
	// FacetDIMM: a DIMM key (DIMM rule).
	FacetDIMM
	// FacetRow: a DRAM row (row rule).
	FacetRow
)

// All is every facet: what a record of a new error, or of anything that is
// not a memory error, brings.
const All = FacetError | FacetPage | FacetDIMM | FacetRow

func (f Facet) String() string {
	var parts []string
	for _, x := range []struct {
		f    Facet
		name string
	}{{FacetError, "error"}, {FacetPage, "page"}, {FacetDIMM, "dimm"}, {FacetRow, "row"}} {
		if f&x.f != 0 {
			parts = append(parts, x.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// Verdict is what one record contributes: Event.Count errors, of which the
// engines have not yet seen the facets in New. A record can yield several
// verdicts (part of its count matches errors seen before, part is new).
type Verdict struct {
	Event fault.Event
	New   Facet
}

// Views of an error: the kernel paths that can report the same error once
// each. Records of one view never merge with each other.
type view uint8

const (
	viewNone   view = iota
	viewMCE         // mce:mce_record (tracefs, eBPF, /dev/mcelog)
	viewMC          // ras:mc_event (EDAC, GHES)
	viewExtlog      // ras:extlog_mem_event (Intel eMCA)
	nViews
)

var viewNames = [nViews]string{"", "mce_record", "mc_event", "extlog_mem_event"}

func viewOf(src fault.Source) view {
	switch src {
	case fault.SourceTraceMCE, fault.SourceEBPF, fault.SourceMcelog:
		return viewMCE
	case fault.SourceTraceMC, fault.SourceEBPFMC:
		return viewMC
	case fault.SourceTraceExtlog, fault.SourceEBPFExtlog:
		return viewExtlog
	}
	return viewNone
}

// Options tune the stage.
type Options struct {
	// Window is how close in time (as received) two records must be to be
	// taken for one error. The kernel writes mce_record and mc_event from
	// one work item, microseconds apart, but the daemon reads per-CPU
	// buffers and may see them seconds apart. Default 5 s.
	Window time.Duration
	// CreditTTL is how long an mc_event's errors wait for the EDAC counter
	// delta that also counts them. Default 10 minutes, more than any poll
	// interval anyone sets.
	CreditTTL time.Duration
	// MaxOpen bounds the errors kept open for a partner (one group per
	// page and path under a storm). Past it the oldest close early: a late
	// partner of theirs would count again, which is better than memory
	// growing with a storm over millions of pages. Default 65536.
	MaxOpen int
}

// Stats count what the stage decided, by view.
type Stats struct {
	// First counts errors a record of that view was the first to report.
	First map[string]uint64
	// Merged counts errors a record of that view reported after another
	// view already had: counted once, not again.
	Merged map[string]uint64
	// EDACCredited counts counter-delta errors not counted because an
	// mc_event had delivered them; EDACNew those no record delivered.
	EDACCredited, EDACNew uint64
	// Joined counts records whose DIMM came from the MCA location joined
	// to an EDAC label; Learned is the number of locations whose label was
	// learned from pairs of records.
	Joined  uint64
	Learned int
}

type dimmRef struct {
	mc    int
	label string
}

// group is errors reported by some views and not yet by others.
type group struct {
	at      time.Time // the newest error's arrival: the window runs from it
	born    time.Time // when queued; the queue is in this order
	views   uint8     // bit per view
	facets  Facet
	n       uint32
	severe  bool // uncorrected: never merges with corrected ones
	hasPFN  bool
	pfn     uint64
	hasDIMM bool
	dimm    dimmRef
	// native: the DIMM came with an EDAC or firmware record, not from a
	// join, so it may teach the join.
	native bool
	loc    string // MCA location key when a record of the group had one
	// node: the error is one no record placed on a rank, matched across
	// views by its node (unplacedNode).
	hasNode bool
	node    int
	gone    bool
}

type creditKey struct {
	mc     int
	label  string
	severe bool
}

type credit struct {
	n  uint64
	at time.Time
}

// Stage is the count-once stage. Build it with New.
type Stage struct {
	opts Options

	queue  []*group // by arrival, for expiry
	byPFN  map[uint64][]*group
	byDIMM map[dimmRef][]*group
	byNode map[int][]*group

	credits map[creditKey][]credit
	held    []fault.Event // counter deltas waiting for their mc_events

	layout []Slot
	edac   bool // a layout was given: DIMMs are keyed by EDAC labels only
	// labelled is set once an EDAC or firmware record brought a label:
	// from then on labels, not raw MCA locations, key the DIMM rule.
	labelled bool
	learned  map[string]dimmRef
	clashed  map[string]bool

	// scratch is candidates' list, reused: one per record otherwise.
	scratch []*group
	// locNames caches locKey's text by its parts (locate runs per record).
	locNames map[locParts]string

	nHeld             atomic.Int64
	first, merged     [nViews]atomic.Uint64
	credited, edacNew atomic.Uint64
	joined            atomic.Uint64
	nLearned          atomic.Int64
}

// New returns a stage; zero options take the defaults.
func New(opts Options) *Stage {
	if opts.Window <= 0 {
		opts.Window = 5 * time.Second
	}
	if opts.CreditTTL <= 0 {
		opts.CreditTTL = 10 * time.Minute
	}
	if opts.MaxOpen <= 0 {
		opts.MaxOpen = 1 << 16
	}
	return &Stage{
		opts:    opts,
		byPFN:   map[uint64][]*group{},
		byDIMM:  map[dimmRef][]*group{},
		byNode:  map[int][]*group{},
		credits: map[creditKey][]credit{},
		learned: map[string]dimmRef{},
		clashed: map[string]bool{},
	}
}

// Window is the pairing window in use.
func (s *Stage) Window() time.Duration { return s.opts.Window }

// Stats returns a snapshot; safe to call from any goroutine.
func (s *Stage) Stats() Stats {
	st := Stats{First: map[string]uint64{}, Merged: map[string]uint64{}}
	for v := viewMCE; v < nViews; v++ {
		st.First[viewNames[v]] = s.first[v].Load()
		st.Merged[viewNames[v]] = s.merged[v].Load()
	}
	st.EDACCredited, st.EDACNew = s.credited.Load(), s.edacNew.Load()
	st.Joined = s.joined.Load()
	st.Learned = int(s.nLearned.Load())
	return st
}

func usablePage(ev *fault.Event) bool { return ev.AddrValid && ev.AddrLSB <= 12 }

func facetsOf(ev *fault.Event) Facet {
	f := FacetError
	if usablePage(ev) {
		f |= FacetPage
	}
	if ev.DIMMLabel != "" {
		f |= FacetDIMM
	}
	if ev.Row != "" {
		f |= FacetRow
	}
	return f
}

func severe(ev *fault.Event) bool {
	return ev.Severity != fault.SeverityCorrected && ev.Severity != fault.SeverityDeferred
}

// Observe takes one record and returns what it adds. Records that are not
// memory errors pass unchanged with every facet.
func (s *Stage) Observe(ev fault.Event) []Verdict { return s.AppendObserve(nil, ev) }

// AppendObserve is Observe appending to out, so a caller on the hot path
// can reuse one slice.
func (s *Stage) AppendObserve(out []Verdict, ev fault.Event) []Verdict {
	if ev.Class != fault.ClassMemory {
		return append(out, Verdict{Event: ev, New: All})
	}
	if ev.Source == fault.SourceEDACPoll {
		s.held = append(s.held, ev)
		s.nHeld.Store(int64(len(s.held)))
		return s.AppendFlush(out, ev.Received)
	}
	v := viewOf(ev.Source)
	if v == viewMC && ev.MC != fault.Unknown {
		s.addCredit(creditKey{mc: ev.MC, label: ev.DIMMLabel, severe: severe(&ev)}, uint64(ev.Count), ev.Received)
	}
	if v == viewMC && ev.LocatedBy == fault.LocatedByUnplaced {
		// The label named the counter the kernel bumped (credited above),
		// not the error's DIMM: the error is matched by its node instead.
		ev.DIMMLabel = ""
	}
	out = s.AppendFlush(out, ev.Received)
	if v == viewNone {
		return append(out, Verdict{Event: ev, New: All})
	}
	if v != viewMCE && ev.DIMMLabel != "" {
		s.labelled = true
	}
	loc := s.locate(&ev)
	rec := facetsOf(&ev)
	left := max(ev.Count, 1)
	// last is this record's latest verdict: one record's matches with the
	// same facets coalesce into it (never into a held delta or a backfill).
	last := -1
	for _, g := range s.candidates(&ev, v) {
		if left == 0 {
			break
		}
		take := min(left, g.n)
		if take < g.n {
			s.split(g, g.n-take)
		}
		g.views |= 1 << v
		out = s.learn(out, g, &ev, v, loc)
		s.fill(g, &ev, loc, v)
		newFacets := rec &^ g.facets &^ FacetError
		g.facets |= rec
		s.merged[v].Add(uint64(take))
		left -= take
		switch {
		case newFacets == 0:
		case last == len(out)-1 && last >= 0 && out[last].New == newFacets:
			out[last].Event.Count += take
		default:
			part := ev
			part.Count = take
			out = append(out, Verdict{Event: part, New: newFacets})
			last = len(out) - 1
		}
	}
	if left > 0 {
		g := group{at: ev.Received, born: ev.Received, views: 1 << v, facets: rec, n: left, severe: severe(&ev)}
		describe(&g, &ev, loc, v)
		if twin := s.twin(&g); twin != nil {
			twin.n += left
			twin.at = ev.Received
		} else {
			// A copy: g itself stays on the stack when a twin takes it.
			ng := new(group)
			*ng = g
			s.index(ng)
			s.queue = append(s.queue, ng)
		}
		s.first[v].Add(uint64(left))
		part := ev
		part.Count = left
		out = append(out, Verdict{Event: part, New: rec | FacetError})
	}
	return out
}

// candidates lists the open groups this record may belong to, oldest
// first: those on the same page, then (when either lacks a page) those on
// the same DIMM. A group already seen by this view is a different error.
func (s *Stage) candidates(ev *fault.Event, v view) []*group {
	sev := severe(ev)
	ok := func(g *group) bool { return !g.gone && g.views&(1<<v) == 0 && g.severe == sev && g.n > 0 }
	out := s.scratch[:0]
	hasPFN := usablePage(ev)
	if hasPFN {
		for _, g := range s.byPFN[ev.PFN()] {
			if ok(g) {
				out = append(out, g)
			}
		}
	}
	if ev.DIMMLabel != "" {
		for _, g := range s.byDIMM[dimmRef{ev.MC, ev.DIMMLabel}] {
			if ok(g) && (!hasPFN || !g.hasPFN) {
				out = append(out, g)
			}
		}
	}
	if n, placeless := unplacedNode(ev, v); placeless {
		for _, g := range s.byNode[n] {
			if ok(g) && !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	if len(out) > 1 {
		sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	}
	s.scratch = out[:0] // grown or not, the next record reuses it
	return out
}

// unplacedNode is the node by which an error that no record placed on a
// rank is matched across views, and false for any other record. amd64_edac
// logs a Zen UMC error without a valid MCA_SYND at chip select 0 of the
// node (fault.LocatedByUnplaced; the channel is the UMC's on 6.1 and 0 on
// 6.12, so only the node is common to both kernels), and the MCA record of
// that error names its UMC but no chip select: neither a page nor a DIMM
// can pair them. Two such errors on one node within Window pair either
// way round and each still counts once. On AMD the EDAC controller is the
// node, taken for the socket as join does.
func unplacedNode(ev *fault.Event, v view) (int, bool) {
	switch {
	case v == viewMC && ev.LocatedBy == fault.LocatedByUnplaced && ev.MC != fault.Unknown:
		return ev.MC, true
	case v == viewMCE && ev.Vendor == fault.VendorAMD && ev.Channel != fault.Unknown &&
		ev.ChipSelect == fault.Unknown && ev.Socket != fault.Unknown && !usablePage(ev):
		return ev.Socket, true
	}
	return 0, false
}

// split moves rest errors of g into a new group with the same history, so
// a record matching only part of a group's count leaves the rest open.
func (s *Stage) split(g *group, rest uint32) {
	c := *g
	c.n = rest
	g.n -= rest
	s.queue = append(s.queue, &c)
	s.index(&c)
}

// fill records what a record tells about its group's errors and indexes
// the group under what is new.
func (s *Stage) fill(g *group, ev *fault.Event, loc string, v view) {
	hadPFN, hadDIMM, hadNode := g.hasPFN, g.hasDIMM, g.hasNode
	describe(g, ev, loc, v)
	if g.hasPFN && !hadPFN {
		s.byPFN[g.pfn] = append(s.byPFN[g.pfn], g)
	}
	if g.hasDIMM && !hadDIMM {
		s.byDIMM[g.dimm] = append(s.byDIMM[g.dimm], g)
	}
	if g.hasNode && !hadNode {
		s.byNode[g.node] = append(s.byNode[g.node], g)
	}
}

// describe fills in what the group does not know yet, without indexing.
func describe(g *group, ev *fault.Event, loc string, v view) {
	if !g.hasPFN && usablePage(ev) {
		g.hasPFN, g.pfn = true, ev.PFN()
	}
	if !g.hasDIMM && ev.DIMMLabel != "" {
		g.hasDIMM, g.dimm = true, dimmRef{ev.MC, ev.DIMMLabel}
		g.native = v != viewMCE
	}
	if g.loc == "" {
		g.loc = loc
	}
	if !g.hasNode {
		g.node, g.hasNode = unplacedNode(ev, v)
	}
}

// index makes a new group findable by its page and DIMM.
func (s *Stage) index(g *group) {
	if g.hasPFN {
		s.byPFN[g.pfn] = append(s.byPFN[g.pfn], g)
	}
	if g.hasDIMM {
		s.byDIMM[g.dimm] = append(s.byDIMM[g.dimm], g)
	}
	if g.hasNode {
		s.byNode[g.node] = append(s.byNode[g.node], g)
	}
}

// twin finds an open group that g's errors can join: same page, DIMM,
// location and history. Under a storm on a few pages this keeps one group
// per page and path instead of one per error, so a record costs the same
// whatever the rate. The twin's window restarts with the newest error.
func (s *Stage) twin(g *group) *group {
	list := s.byDIMM[g.dimm]
	switch {
	case g.hasPFN:
		list = s.byPFN[g.pfn]
	case !g.hasDIMM && g.hasNode:
		list = s.byNode[g.node]
	}
	for i := len(list) - 1; i >= 0; i-- {
		t := list[i]
		if t != g && !t.gone && t.views == g.views && t.facets == g.facets && t.severe == g.severe &&
			t.hasPFN == g.hasPFN && t.pfn == g.pfn && t.hasDIMM == g.hasDIMM && t.dimm == g.dimm &&
			t.loc == g.loc && t.native == g.native && t.hasNode == g.hasNode && t.node == g.node {
			return t
		}
	}
	return nil
}

func (s *Stage) drop(g *group) {
	if g.hasPFN {
		s.byPFN[g.pfn] = prune(s.byPFN[g.pfn])
		if len(s.byPFN[g.pfn]) == 0 {
			delete(s.byPFN, g.pfn)
		}
	}
	if g.hasDIMM {
		s.byDIMM[g.dimm] = prune(s.byDIMM[g.dimm])
		if len(s.byDIMM[g.dimm]) == 0 {
			delete(s.byDIMM, g.dimm)
		}
	}
	if g.hasNode {
		s.byNode[g.node] = prune(s.byNode[g.node])
		if len(s.byNode[g.node]) == 0 {
			delete(s.byNode, g.node)
		}
	}
}

// expire closes groups and credits older than their windows. A group
// whose window restarted (a twin took new errors) goes back in the queue.
func (s *Stage) expire(now time.Time) {
	cut := 0
	var again []*group
	for cut < len(s.queue) && (now.Sub(s.queue[cut].born) > s.opts.Window || len(s.queue)-cut > s.opts.MaxOpen) {
		g := s.queue[cut]
		cut++
		if g.gone {
			continue
		}
		if now.Sub(g.at) <= s.opts.Window && len(s.queue)-cut < s.opts.MaxOpen {
			g.born = g.at
			again = append(again, g)
			continue
		}
		g.gone = true
		s.drop(g)
	}
	if cut > 0 {
		s.queue = append(append(s.queue[:0:0], s.queue[cut:]...), again...)
	}
	for k, cs := range s.credits {
		i := 0
		for i < len(cs) && now.Sub(cs[i].at) > s.opts.CreditTTL {
			i++
		}
		if i == len(cs) {
			delete(s.credits, k)
		} else if i > 0 {
			s.credits[k] = cs[i:]
		}
	}
}

func prune(gs []*group) []*group {
	out := gs[:0]
	for _, g := range gs {
		if !g.gone {
			out = append(out, g)
		}
	}
	return out
}

// addCredit notes n errors an mc_event delivered. Credits of one DIMM
// within a second share an entry, so a storm costs one entry per second,
// not one per error.
func (s *Stage) addCredit(k creditKey, n uint64, at time.Time) {
	cs := s.credits[k]
	if l := len(cs); l > 0 && at.Sub(cs[l-1].at) < time.Second {
		cs[l-1].n += n
		return
	}
	s.credits[k] = append(cs, credit{n: n, at: at})
}

// takeCredit takes up to n errors off the credits of k, oldest first.
func (s *Stage) takeCredit(k creditKey, n uint64) uint64 {
	cs := s.credits[k]
	var got uint64
	for len(cs) > 0 && got < n {
		t := min(cs[0].n, n-got)
		got += t
		cs[0].n -= t
		if cs[0].n == 0 {
			cs = cs[1:]
		}
	}
	if len(cs) == 0 {
		delete(s.credits, k)
	} else {
		s.credits[k] = cs
	}
	return got
}

// Flush counts the held counter deltas that have waited Window: only the
// part no mc_event delivered. A delta takes the credits of its own label
// first, then those whose label names no single DIMM ("" or "A or B"):
// the kernel counted such errors in the no-info counter or in a DIMM
// without a label, and which of them does not change the total. The daemon
// calls it about once a second so deltas are counted without new records.
//
// A counter delta is held Window before it counts: the kernel bumps the
// counter and emits mc_event together, but the poller may read the counter
// before the daemon has read the trace record, and a delta counted at once
// could not be taken back. A delta has no page, so holding it never delays
// an isolation.
func (s *Stage) Flush(now time.Time) []Verdict { return s.AppendFlush(nil, now) }

// AppendFlush is Flush appending to out.
func (s *Stage) AppendFlush(out []Verdict, now time.Time) []Verdict {
	// Deltas settle before credits expire: a delta that matured long ago
	// (no record for a while) still meets the mc_events of its time.
	defer s.expire(now)
	i := 0
	for ; i < len(s.held) && now.Sub(s.held[i].Received) >= s.opts.Window; i++ {
		if v, ok := s.settle(s.held[i]); ok {
			out = append(out, v)
		}
	}
	if i > 0 {
		s.held = append(s.held[:0:0], s.held[i:]...)
		s.nHeld.Store(int64(len(s.held)))
	}
	return out
}

// Held is the number of counter deltas waiting; safe from any goroutine.
func (s *Stage) Held() int { return int(s.nHeld.Load()) }

func (s *Stage) settle(ev fault.Event) (Verdict, bool) {
	sev := severe(&ev)
	n := uint64(ev.Count)
	got := s.takeCredit(creditKey{ev.MC, ev.DIMMLabel, sev}, n)
	if got < n {
		var keys []creditKey
		for k := range s.credits {
			if k.mc == ev.MC && k.severe == sev && k.label != ev.DIMMLabel && (k.label == "" || strings.Contains(k.label, " or ")) {
				keys = append(keys, k)
			}
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].label < keys[j].label })
		for _, k := range keys {
			got += s.takeCredit(k, n-got)
		}
	}
	s.credited.Add(got)
	if got == n {
		return Verdict{}, false
	}
	s.edacNew.Add(n - got)
	ev.Count = uint32(n - got)
	return Verdict{Event: ev, New: facetsOf(&ev) | FacetError}, true
}

// String describes a verdict for logs and tests.
func (v Verdict) String() string {
	return fmt.Sprintf("%s new=%s", v.Event.String(), v.New)
}
