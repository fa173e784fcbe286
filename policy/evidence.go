package policy

import (
	"slices"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// evidenceLog keeps the most recent events so a tripped engine can name the
// events that filled it without every tracked page holding copies: a table
// slot stores only the event's number here. An event that scrolled out of
// the log is simply missing from the case's evidence (the summary still
// gives the count).
type evidenceLog struct {
	events []fault.Event
	seqs   []uint32
	next   uint32
	mask   uint32
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
	events, seqs := make([]fault.Event, n), make([]uint32, n)
	mask := uint32(n - 1)
	for i, s := range l.seqs {
		if s != 0 {
			events[s&mask], seqs[s&mask] = l.events[i], s
		}
	}
	l.events, l.seqs, l.mask = events, seqs, mask
}

// push copies ev into the log and returns its number (never 0).
func (l *evidenceLog) push(ev *fault.Event) uint32 {
	s := l.next
	if len(l.events) < evidenceLogSize && int(s) > len(l.events) {
		l.grow()
	}
	l.events[s&l.mask] = *ev
	l.seqs[s&l.mask] = s
	l.next++
	if l.next == 0 {
		l.next = 1
	}
	return s
}

func (l *evidenceLog) get(s uint32) (*fault.Event, bool) {
	if s == 0 || len(l.seqs) == 0 || l.seqs[s&l.mask] != s {
		return nil, false
	}
	return &l.events[s&l.mask], true
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
func (l *evidenceLog) collect(refs []evidenceRef, limit int, window time.Duration, match func(*fault.Event) bool, standIn func(evidenceRef) fault.Evidence) []fault.Evidence {
	if len(refs) == 0 {
		return nil
	}
	newest := refs[len(refs)-1].seq
	last, ok := l.get(newest)
	if !ok {
		return nil
	}
	cutoff := last.Received.Add(-window)
	var out []fault.Evidence
	for s := newest; s != 0 && len(out) < limit; s-- {
		ev, ok := l.get(s)
		if !ok || ev.Received.Before(cutoff) {
			break
		}
		if match(ev) {
			out = append(out, fault.EvidenceOf(ev))
		}
	}
	// Gone from the log, newest first, as many as the limit leaves room for.
	for i := len(refs) - 1; i >= 0 && len(out) < limit; i-- {
		if _, ok := l.get(refs[i].seq); !ok {
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
