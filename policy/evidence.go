package policy

import (
	"slices"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// evidenceLog keeps the most recent events so a tripped engine can name the
// events that filled it without every tracked page holding copies: a table
// slot stores only the event's number here. An event that scrolled out of
// the log is listed from what its table kept (collect's stand-in).
type evidenceLog struct {
	events []fault.Event
	// slots says, beside each event, what a walk over the log tests: its
	// number, time and page. A walk reads these and only the events it
	// takes: the whole log is ~260 KiB of events, and on a host whose log
	// is full, reading each one was about a fifth of the pages the path
	// from a deciding error to its isolation touched (under emulation,
	// after an idle spell, a page touched is what the path pays).
	slots []logSlot
	next  uint32
	mask  uint32
}

// logSlot is one event's entry in the log's index: seq is its number (0:
// empty), at its engine time, page its pageKey (0: no usable page).
type logSlot struct {
	seq  uint32
	at   int64
	page uint64
}

// pageKey is a page as the log's index holds it: 0 stands for none, so
// the page frame 0 is 1.
func pageKey(pfn uint64) uint64 { return pfn + 1 }

// eventPageKey is the pageKey of the page ev names, 0 when it names none.
func eventPageKey(ev *fault.Event) uint64 {
	if !usablePage(ev) {
		return 0
	}
	return pageKey(ev.PFN())
}

// evidenceLogSize is a power of two; at ~260 bytes an event it is ~260 KiB.
// The log starts small and doubles up to it, so an engine that has seen
// few events (replay keeps one per host and policy) costs little.
const (
	evidenceLogSize    = 1024
	evidenceLogInitial = 16
)

func newEvidenceLog() evidenceLog {
	return evidenceLog{next: 1}
}

// grow doubles the ring. Every event still in it lands on its own slot of
// the larger ring: they are the last len(events) numbers.
func (l *evidenceLog) grow() {
	n := max(2*len(l.events), evidenceLogInitial)
	events, slots := make([]fault.Event, n), make([]logSlot, n)
	mask := uint32(n - 1)
	for i, sl := range l.slots {
		if sl.seq != 0 {
			events[sl.seq&mask], slots[sl.seq&mask] = l.events[i], sl
		}
	}
	l.events, l.slots, l.mask = events, slots, mask
}

// push copies ev, observed at engine time at, into the log and returns
// its number (never 0).
func (l *evidenceLog) push(ev *fault.Event, at int64) uint32 {
	s := l.next
	if len(l.events) < evidenceLogSize && int(s) > len(l.events) {
		l.grow()
	}
	l.events[s&l.mask] = *ev
	l.slots[s&l.mask] = logSlot{seq: s, at: at, page: eventPageKey(ev)}
	l.next++
	if l.next == 0 {
		l.next = 1
	}
	return s
}

func (l *evidenceLog) get(s uint32) (*fault.Event, bool) {
	if !l.holds(s) {
		return nil, false
	}
	return &l.events[s&l.mask], true
}

// holds reports whether event s is still in the log.
func (l *evidenceLog) holds(s uint32) bool {
	return s != 0 && len(l.slots) > 0 && l.slots[s&l.mask].seq == s
}

// evidenceRef is what a rate table keeps of the events that filled a key:
// each one's number in the log, when (engine time) and how many errors it
// stands for, and its page where the key counts pages. The time and count
// outlive the log's copy of the event.
type evidenceRef struct {
	seq uint32
	at  int64
	n   uint32
	pfn uint64
}

// evidenceQuery names the events of one tripped key: those within window
// of the newest that match. page, when not 0, is the pageKey every
// matching event is on, and match may then be nil: the walk tests the
// index's page and reads no other event.
type evidenceQuery struct {
	window time.Duration
	page   uint64
	match  func(*fault.Event) bool
}

// onPage is the query of a page rule's key.
func onPage(pfn uint64, window time.Duration) evidenceQuery {
	return evidenceQuery{window: window, page: pageKey(pfn)}
}

// collect returns at most limit evidence entries for a tripped key, the
// most recent ones, oldest first. The engines keep only a few slot numbers
// per resource (and merge slots past that), so rather than trusting those
// numbers alone it walks the log back from the newest slot event over
// every event within the rule's window: a case then lists each error that
// filled the engine, not just one per slot. A slot whose event has left
// the log (more than its size of other events came since: a storm, or a
// busy machine over the window) gets standIn's entry, made from what the
// table kept, so that no error the rule counted is missing from the case;
// the history holds its full record.
func (l *evidenceLog) collect(refs []evidenceRef, limit int, q evidenceQuery, standIn func(evidenceRef) fault.Evidence) []fault.Evidence {
	if len(refs) == 0 {
		return nil
	}
	newest := refs[len(refs)-1].seq
	if !l.holds(newest) {
		return nil
	}
	cutoff := l.slots[newest&l.mask].at - int64(q.window)
	var out []fault.Evidence
	for s := newest; s != 0 && len(out) < limit; s-- {
		sl := &l.slots[s&l.mask]
		if sl.seq != s || sl.at < cutoff {
			break
		}
		if q.page != 0 && sl.page != q.page {
			continue
		}
		if ev := &l.events[s&l.mask]; q.match == nil || q.match(ev) {
			out = append(out, fault.EvidenceOf(ev))
		}
	}
	// Gone from the log, newest first, as many as the limit leaves room for.
	for i := len(refs) - 1; i >= 0 && len(out) < limit; i-- {
		if !l.holds(refs[i].seq) {
			out = append(out, standIn(refs[i]))
		}
	}
	slices.Reverse(out)
	return out
}

// recent returns the last limit events, oldest first (storm evidence).
func (l *evidenceLog) recent(limit int) []fault.Evidence {
	var seqs []uint32
	for s := l.next - 1; s != 0 && len(seqs) < limit; s-- {
		if _, ok := l.get(s); !ok {
			break
		}
		seqs = append(seqs, s)
	}
	out := make([]fault.Evidence, 0, len(seqs))
	for i := len(seqs) - 1; i >= 0; i-- {
		ev, _ := l.get(seqs[i])
		out = append(out, fault.EvidenceOf(ev))
	}
	return out
}
