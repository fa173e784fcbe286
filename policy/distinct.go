package policy

import (
	"cmp"
	"slices"
	"time"
)

// distinctTable counts distinct pages per key (a DIMM, a DRAM row) within a
// window and trips when threshold pages are in it. Keys are few (DIMMs,
// rows that actually fail) and each set stops growing at the threshold, so
// a plain map per key is small enough; the recency list still bounds how
// many keys a storm over many rows can create.
type distinctTable[K comparable] struct {
	keys      lru[K]
	threshold int
	window    int64
	pages     []map[uint64]seenPage
}

type seenPage struct {
	at  int64
	seq uint32
}

func newDistinct[K comparable](threshold int, window time.Duration, maxKeys int) *distinctTable[K] {
	t := &distinctTable[K]{threshold: max(threshold, 1), window: int64(window)}
	t.keys = newLRU[K](nil, maxKeys, func(s uint32) { t.pages[s] = nil })
	return t
}

// add records pfn under k at now. On a trip it returns the pages in the
// window (sorted) and appends what it kept of their latest errors, oldest
// first, to ev, then forgets k. Otherwise level is k's page count (pages
// that left the window are dropped only near the threshold, so it may
// count them).
func (t *distinctTable[K]) add(k K, pfn uint64, now int64, seq uint32, ev []evidenceRef) (tripped bool, level int, pages []uint64, _ []evidenceRef) {
	cutoff := now - t.window
	t.keys.expire(cutoff, sweepPerEvent)
	s, ok := t.keys.lookup(k)
	if !ok {
		s = t.keys.insert(k, now)
		for int(s) >= len(t.pages) {
			t.pages = append(t.pages, nil)
		}
	}
	set := t.pages[s]
	if set == nil {
		set = make(map[uint64]seenPage)
		t.pages[s] = set
	}
	set[pfn] = seenPage{at: now, seq: seq}
	if len(set) >= t.threshold {
		for p, seen := range set {
			if seen.at <= cutoff {
				delete(set, p)
			}
		}
	}
	if len(set) < t.threshold {
		t.keys.touch(s, now)
		return false, len(set), nil, ev
	}
	pages = make([]uint64, 0, len(set))
	first := len(ev)
	for p, seen := range set {
		pages = append(pages, p)
		ev = append(ev, evidenceRef{seq: seen.seq, at: seen.at, n: 1, pfn: p})
	}
	slices.Sort(pages)
	slices.SortFunc(ev[first:], func(a, b evidenceRef) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.seq, b.seq)) })
	t.keys.remove(s)
	return true, len(pages), pages, ev
}

// level is the number of k's distinct pages still in the window at now.
func (t *distinctTable[K]) level(k K, now int64) int {
	s, ok := t.keys.lookup(k)
	if !ok {
		return 0
	}
	n := 0
	for _, seen := range t.pages[s] {
		if seen.at > now-t.window {
			n++
		}
	}
	return n
}

func (t *distinctTable[K]) forget(k K) {
	if s, ok := t.keys.lookup(k); ok {
		t.keys.remove(s)
	}
}
