package daemon

import (
	"slices"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// overlap counts each record once while two sources of one group both
// read it: a preferred source (eBPF) that opened late takes over from the
// fallback (tracefs) that covered the gap.
//
// The hand-over: the preferred source is attached and reading before the
// fallback is told to stop; the fallback then drains its buffers (every
// record from before the attach reaches us through it) and stops. Records
// between the attach and the drain arrive twice. They are matched by
// identity: the decoded event minus its path and receive time, which for
// mce_record includes the TSC, so two real errors never look alike; other
// records (mc_event carries no counter) could in principle, so matching is
// one-for-one: a record is dropped only against an unmatched twin from the
// other side, never against one from its own. What one side alone
// delivered (before the attach, or lost by the other) passes. The
// matching lasts until the fallback stopped plus handoverGrace, and only
// for events of the two sources in the hand-over.
type overlap struct {
	sides      map[string]bool
	watching   []*sourceEntry
	pending    map[recordKey]map[string]int
	duplicates uint64
}

func newOverlap() *overlap {
	return &overlap{sides: map[string]bool{}, pending: map[recordKey]map[string]int{}}
}

// watch adds a source standing down; its side and every armed source's of
// its group take part (caller holds the set's mu).
func (o *overlap) watch(e *sourceEntry) {
	if slices.Contains(o.watching, e) {
		return
	}
	o.watching = append(o.watching, e)
	o.sides[e.def.name] = true
}

// take adds the preferred side.
func (o *overlap) take(name string) { o.sides[name] = true }

// ended says whether every watched source stopped more than handoverGrace
// ago (caller holds the set's mu).
func (o *overlap) ended(now time.Time) bool {
	for _, e := range o.watching {
		switch {
		case e.done != nil:
			return false // still draining
		case e.stoppedAt.IsZero():
			// It died rather than stood down: its last records are
			// already in the channel.
			e.stoppedAt = now
			return false
		case now.Sub(e.stoppedAt) < handoverGrace:
			return false
		}
	}
	return true
}

// sideOf is the source family of an event: "ebpf" for ebpf:mce_record,
// "tracefs" for tracefs:mc_event; the table names its rows the same.
func sideOf(src fault.Source) string {
	side, _, _ := strings.Cut(string(src), ":")
	return side
}

// recordKey is an event's identity across paths.
type recordKey struct {
	kind                                    string
	cpu, socket, bank, mc                   int
	status, addr, misc, synd, ipid, tsc, pa uint64
	recorded                                int64
	count                                   uint32
	label, row, detail                      string
	layers                                  [3]int
}

func keyOf(ev *fault.Event) recordKey {
	_, kind, _ := strings.Cut(string(ev.Source), ":")
	return recordKey{
		kind: kind, cpu: ev.CPU, socket: ev.Socket, bank: ev.Bank, mc: ev.MC,
		status: ev.Status, addr: ev.Addr, misc: ev.Misc, synd: ev.Synd, ipid: ev.IPID, tsc: ev.TSC, pa: ev.PhysAddr,
		recorded: ev.Recorded.UnixNano(), count: ev.Count,
		label: ev.DIMMLabel, row: ev.Row, detail: ev.Detail, layers: ev.Layers,
	}
}

// duplicate says whether ev's twin from the other side already passed.
func (o *overlap) duplicate(ev *fault.Event) bool {
	side := sideOf(ev.Source)
	if !o.sides[side] {
		return false
	}
	k := keyOf(ev)
	m := o.pending[k]
	for other, n := range m {
		if other != side && n > 0 {
			m[other]--
			o.duplicates++
			return true
		}
	}
	if m == nil {
		m = map[string]int{}
		o.pending[k] = m
	}
	m[side]++
	return false
}
