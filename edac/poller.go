package edac

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

// PollerStats counts what the poller did since it was created.
type PollerStats struct {
	Polls uint64
	// Resets counts controllers whose counters went backwards (reset_counters
	// written, driver reloaded) and were re-baselined.
	Resets uint64
	// ReadErrors counts DIMMs, csrows or controllers skipped for a round
	// because one of their files could not be read.
	ReadErrors uint64
}

// Poller turns EDAC counter deltas into events. It reports every delta:
// which of them a tracepoint already delivered is the count-once stage's
// business (countonce/), not the poller's. It is safe for concurrent use.
type Poller struct {
	paths kpath.Paths
	fsys  kpath.FS
	log   logrus.FieldLogger
	now   func() time.Time

	mu       sync.Mutex
	started  bool
	last     map[string]uint64 // counter key -> value at the previous poll
	baseline map[string]uint64 // counter key -> value when first seen
	known    map[int]bool      // controllers seen before
	seconds  map[int]uint64    // mc -> seconds_since_reset at the previous poll
	stats    PollerStats
}

// NewPoller returns a poller that has not yet taken its baseline.
func NewPoller(p kpath.Paths, fsys kpath.FS, log logrus.FieldLogger, now func() time.Time) *Poller {
	return &Poller{
		paths:    p,
		fsys:     fsys,
		log:      log,
		now:      now,
		last:     map[string]uint64{},
		baseline: map[string]uint64{},
		known:    map[int]bool{},
		seconds:  map[int]uint64{},
	}
}

// Baseline returns each counter's value when the poller first saw it, keyed
// like "mc0/dimm2/ce", "mc1/ce_noinfo", "mc0/csrow1/ch0/ce". Those errors
// happened before the daemon watched and are history, not new errors.
func (p *Poller) Baseline() map[string]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]uint64, len(p.baseline))
	for k, v := range p.baseline {
		out[k] = v
	}
	return out
}

// Stats returns a snapshot of the counters.
func (p *Poller) Stats() PollerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// counterUnit is one thing with its own error counters: a DIMM or rank, a
// legacy csrow channel or csrow, or a controller's "no info" bucket.
type counterUnit struct {
	key    string // "mc0/dimm2", "mc0/csrow1/ch0", "mc0/noinfo"
	mc     int
	label  string // the kernel's label, "" if none
	name   string // label, or key when the label is empty
	layers [3]int
	hasCE  bool
	hasUE  bool
	ce, ue uint64
	errs   []error
	// noinfo is the controller's bucket for errors pinned to no DIMM.
	noinfo bool
}

// Poll reads the counters once. The first call only records the baseline.
// It returns ErrNoEDAC when no controller is registered (any state about
// earlier controllers is forgotten), and a joined error for files it could
// not read next to the events it could compute.
func (p *Poller) Poll() ([]fault.Event, error) {
	ctrls, readErr := ReadControllers(p.paths, p.fsys)

	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Polls++
	if errors.Is(readErr, ErrNoEDAC) {
		p.forgetExcept(nil)
		return nil, readErr
	}
	if len(ctrls) == 0 && readErr != nil {
		p.stats.ReadErrors++
		return nil, readErr
	}

	first := !p.started
	p.started = true
	seen := map[int]bool{}
	var events []fault.Event
	for i := range ctrls {
		c := &ctrls[i]
		seen[c.Index] = true
		events = append(events, p.pollController(c, first)...)
	}
	p.forgetExcept(seen)
	return events, readErr
}

// pollController compares one controller with the previous poll.
func (p *Poller) pollController(c *Controller, first bool) []fault.Event {
	units := unitsOf(c)
	log := p.log.WithField("mc", c.Index)

	known := p.known[c.Index]
	p.known[c.Index] = true
	prevSecs, havePrevSecs := p.seconds[c.Index]
	secsOK := !hasErrFor(c.Errs, "seconds_since_reset")
	if secsOK {
		p.seconds[c.Index] = c.SecondsSinceReset
	}

	if first || !known {
		if !first {
			log.WithField("name", c.Name).Info("EDAC memory controller appeared; baselining its counters")
		}
		for _, u := range units {
			if len(u.errs) > 0 {
				p.stats.ReadErrors++
				log.WithError(errors.Join(u.errs...)).WithField("unit", u.key).Warn("EDAC counters unreadable; baseline taken later")
				continue
			}
			p.record(u, true)
		}
		p.forgetUnits(c.Index, units)
		return nil
	}

	// A counter going backwards, or seconds_since_reset going backwards,
	// means reset_counters was written or the driver reloaded. What the
	// counters say now mixes old and new errors in ways we cannot untangle,
	// so this round emits nothing for the controller and starts over.
	reset := secsOK && havePrevSecs && c.SecondsSinceReset < prevSecs
	var why string
	if reset {
		why = fmt.Sprintf("seconds_since_reset %d -> %d", prevSecs, c.SecondsSinceReset)
	}
	for _, u := range units {
		if len(u.errs) > 0 || reset {
			continue
		}
		if k, prev, cur, down := p.wentDown(u); down {
			reset = true
			why = fmt.Sprintf("%s %d -> %d", k, prev, cur)
		}
	}
	if reset {
		p.stats.Resets++
		log.WithField("why", why).Warn("EDAC counters were reset; re-baselining, no events this round")
		for _, u := range units {
			if len(u.errs) == 0 {
				p.record(u, false)
			}
		}
		p.forgetUnits(c.Index, units)
		return nil
	}

	ce := make([]uint64, len(units))
	ue := make([]uint64, len(units))
	for i, u := range units {
		if len(u.errs) > 0 {
			p.stats.ReadErrors++
			log.WithError(errors.Join(u.errs...)).WithField("unit", u.key).Warn("EDAC counters unreadable; unit skipped this round")
			continue
		}
		if _, ok := p.lastOf(u); !ok {
			log.WithField("unit", u.key).Info("EDAC counters seen for the first time; baselining them")
			p.record(u, true)
			continue
		}
		ce[i], ue[i] = p.deltas(u)
		p.record(u, false)
	}
	var events []fault.Event
	for i, u := range units {
		if ce[i] > 0 {
			events = append(events, p.event(c, u, ce[i], fault.SeverityCorrected))
		}
		if ue[i] > 0 {
			events = append(events, p.event(c, u, ue[i], fault.SeverityUncorrectedRecoverable))
		}
	}
	p.forgetUnits(c.Index, units)
	return events
}

func (p *Poller) event(c *Controller, u counterUnit, n uint64, sev fault.Severity) fault.Event {
	ev := fault.NewEvent(fault.SourceEDACPoll, p.now())
	ev.Class = fault.ClassMemory
	ev.Severity = sev
	ev.Count = clampCount(n)
	ev.MC = c.Index
	ev.Layers = u.layers
	kind := "corrected"
	if sev != fault.SeverityCorrected {
		kind = "uncorrected"
	}
	if u.noinfo {
		ev.Detail = fmt.Sprintf("EDAC mc%d (%s): %d %s errors without DIMM information (counter delta)", c.Index, c.Name, n, kind)
		return ev
	}
	ev.DIMMLabel = u.name
	ev.Detail = fmt.Sprintf("EDAC mc%d (%s) %s: %d %s errors (counter delta)", c.Index, c.Name, u.key, n, kind)
	return ev
}

// clampCount fits a delta into Event.Count; four billion errors in one poll
// interval already say all there is to say.
func clampCount(n uint64) uint32 {
	if n > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}

func (p *Poller) lastOf(u counterUnit) (uint64, bool) {
	if u.hasCE {
		v, ok := p.last[u.key+"/ce"]
		return v, ok
	}
	v, ok := p.last[u.key+"/ue"]
	return v, ok
}

// wentDown reports the first counter of u that is lower than last time.
func (p *Poller) wentDown(u counterUnit) (string, uint64, uint64, bool) {
	if prev, ok := p.last[u.key+"/ce"]; ok && u.hasCE && u.ce < prev {
		return u.key + "/ce", prev, u.ce, true
	}
	if prev, ok := p.last[u.key+"/ue"]; ok && u.hasUE && u.ue < prev {
		return u.key + "/ue", prev, u.ue, true
	}
	return "", 0, 0, false
}

func (p *Poller) deltas(u counterUnit) (ce, ue uint64) {
	if u.hasCE {
		ce = u.ce - p.last[u.key+"/ce"]
	}
	if u.hasUE {
		if prev, ok := p.last[u.key+"/ue"]; ok {
			ue = u.ue - prev
		}
	}
	return ce, ue
}

// record stores u's current values; asBaseline also notes them as history.
func (p *Poller) record(u counterUnit, asBaseline bool) {
	set := func(k string, v uint64) {
		p.last[k] = v
		if _, ok := p.baseline[k]; asBaseline || !ok {
			p.baseline[k] = v
		}
	}
	if u.hasCE {
		set(u.key+"/ce", u.ce)
	}
	if u.hasUE {
		set(u.key+"/ue", u.ue)
	}
}

// forgetUnits drops state of units of controller mc that are gone.
func (p *Poller) forgetUnits(mc int, units []counterUnit) {
	present := map[string]bool{}
	for _, u := range units {
		present[u.key] = true
	}
	prefix := "mc" + strconv.Itoa(mc) + "/"
	gone := map[string]bool{}
	for k := range p.last {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		unit := k[:strings.LastIndexByte(k, '/')]
		if !present[unit] {
			gone[unit] = true
			delete(p.last, k)
			delete(p.baseline, k)
		}
	}
	for _, unit := range sortedKeys(gone) {
		p.log.WithField("unit", unit).Warn("EDAC DIMM vanished; forgetting its counters")
	}
}

// forgetExcept drops every controller not in keep (nil keeps none).
func (p *Poller) forgetExcept(keep map[int]bool) {
	for mc := range p.known {
		if keep[mc] {
			continue
		}
		delete(p.known, mc)
		delete(p.seconds, mc)
		prefix := "mc" + strconv.Itoa(mc) + "/"
		for k := range p.last {
			if strings.HasPrefix(k, prefix) {
				delete(p.last, k)
				delete(p.baseline, k)
			}
		}
		p.log.WithField("mc", mc).Warn("EDAC memory controller vanished; forgetting its counters")
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// hasErrFor reports whether one of errs is about one of the named files.
func hasErrFor(errs []error, files ...string) bool {
	for _, e := range errs {
		var fe *FileError
		if !errors.As(e, &fe) {
			continue
		}
		for _, f := range files {
			if filepath.Base(fe.Path) == f {
				return true
			}
		}
	}
	return false
}

// unitsOf lists the counter units of a controller: its DIMMs when the kernel
// exposes dimmN/rankN, else the legacy csrow channels (corrected) and csrows
// (uncorrected, which the kernel does not split by channel). Both views count
// the same errors, so using both would count them twice.
func unitsOf(c *Controller) []counterUnit {
	prefix := "mc" + strconv.Itoa(c.Index)
	noinfo := counterUnit{
		key: prefix + "/noinfo", mc: c.Index, noinfo: true, hasCE: true, hasUE: true,
		ce: c.CENoInfo, ue: c.UENoInfo, layers: [3]int{fault.Unknown, fault.Unknown, fault.Unknown},
	}
	for _, e := range c.Errs {
		if hasErrFor([]error{e}, "ce_noinfo_count", "ue_noinfo_count") {
			noinfo.errs = append(noinfo.errs, e)
		}
	}
	units := []counterUnit{noinfo}
	if len(c.DIMMs) > 0 {
		for _, d := range c.DIMMs {
			key := fmt.Sprintf("%s/%s%d", prefix, d.Kind, d.Index)
			units = append(units, counterUnit{
				key: key, mc: c.Index, label: d.Label, name: nameOr(d.Label, key),
				layers: d.Layers, hasCE: true, hasUE: true, ce: d.CE, ue: d.UE, errs: d.Errs,
			})
		}
		return units
	}
	for _, r := range c.CSRows {
		rowKey := fmt.Sprintf("%s/csrow%d", prefix, r.Index)
		var labels []string
		for _, ch := range r.Channels {
			key := fmt.Sprintf("%s/ch%d", rowKey, ch.Index)
			units = append(units, counterUnit{
				key: key, mc: c.Index, label: ch.Label, name: nameOr(ch.Label, key),
				layers: [3]int{r.Index, ch.Index, fault.Unknown},
				hasCE:  true, ce: ch.CE, errs: r.Errs,
			})
			if ch.Label != "" {
				labels = append(labels, ch.Label)
			}
		}
		units = append(units, counterUnit{
			key: rowKey, mc: c.Index, name: nameOr(strings.Join(labels, " or "), rowKey),
			layers: [3]int{r.Index, fault.Unknown, fault.Unknown},
			hasUE:  true, ue: r.UE, errs: r.Errs,
		})
	}
	return units
}

// nameOr is the DIMM name events carry: the label, or the sysfs path below
// edac/mc when the driver left the label empty.
func nameOr(label, key string) string {
	if label != "" {
		return label
	}
	return key
}
