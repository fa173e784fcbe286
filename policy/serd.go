package policy

import "time"

// serdTable is a SERD engine per key: "N errors within T" trips when the
// N-th error lands within T of the first one still in the window. An event
// adds its error count, not 1.
//
// Each key keeps at most `slots` (time, count) pairs, oldest first, in
// slices shared by all keys. With the default page rule (N=2) one slot is
// enough and a tracked page costs about 60 bytes. When N is larger than the
// slots, a full key merges its two closest-in-time slots into the older
// one's time: that can only make errors leave the window early, so the
// engine never trips on fewer than N errors within T; it may trip late by at
// most the merged gap.
//
// The window is half-open: an error exactly T before the newest one has
// left it. Only the most recent updates are kept per key; a key whose
// newest error left the window is forgotten by an amortised sweep from the
// recency list's tail, and beyond maxKeys the least recently updated key is
// evicted. A tripped key is dropped too: its rule remembers the trip.
type serdTable[K comparable] struct {
	keys      lru[K]
	threshold uint64
	window    int64
	slots     int

	used []uint8  // per key: slots in use
	at   []int64  // per key × slots: time of the slot's newest error
	n    []uint32 // per key × slots: errors in the slot
	seq  []uint32 // per key × slots: evidence log number of the slot's newest event
}

// maxSlotsPage keeps tracked pages small; larger thresholds merge.
const (
	maxSlotsPage  = 4
	maxSlotsOther = 64
	// sweepPerEvent bounds the expiry work one event pays for.
	sweepPerEvent = 2
)

func newSERD[K comparable](threshold int, window time.Duration, maxSlots, maxKeys int, index keyIndex[K]) *serdTable[K] {
	t := &serdTable[K]{threshold: uint64(max(threshold, 1)), window: int64(window)}
	// N-1 slots hold everything short of a trip: the N-th error trips
	// before it needs a slot of its own.
	t.slots = min(max(threshold-1, 1), maxSlots)
	t.keys = newLRU[K](index, maxKeys, func(s uint32) { t.used[s] = 0 })
	return t
}

// add counts count errors for k at now (engine nanoseconds). On a trip it
// appends what it kept of the key's events, oldest first, to ev and
// forgets the key. level is the count in the window after the add.
func (t *serdTable[K]) add(k K, now int64, count uint32, seq uint32, ev []evidenceRef) (tripped bool, level uint64, _ []evidenceRef) {
	cutoff := now - t.window
	t.keys.expire(cutoff, sweepPerEvent)
	s, ok := t.keys.lookup(k)
	if !ok {
		if uint64(count) >= t.threshold {
			return true, uint64(count), append(ev, evidenceRef{seq: seq, at: now, n: count})
		}
		s = t.keys.insert(k, now)
		t.grow(s)
	}
	base := int(s) * t.slots
	used := t.dropExpired(base, int(t.used[s]), cutoff)
	sum := uint64(count)
	for i := 0; i < used; i++ {
		sum += uint64(t.n[base+i])
	}
	if sum >= t.threshold {
		for i := 0; i < used; i++ {
			ev = append(ev, evidenceRef{seq: t.seq[base+i], at: t.at[base+i], n: t.n[base+i]})
		}
		t.keys.remove(s)
		return true, sum, append(ev, evidenceRef{seq: seq, at: now, n: count})
	}

	// Events from another source may arrive slightly out of order; keep the
	// slots sorted by treating a late one as arriving with the newest.
	if used > 0 && now < t.at[base+used-1] {
		now = t.at[base+used-1]
	}
	switch {
	case used > 0 && t.at[base+used-1] == now:
		t.n[base+used-1] = addSat(t.n[base+used-1], count)
		t.seq[base+used-1] = seq
	default:
		if used == t.slots {
			t.mergeClosest(base, used)
			used--
		}
		t.at[base+used], t.n[base+used], t.seq[base+used] = now, count, seq
		used++
	}
	t.used[s] = uint8(used)
	t.keys.touch(s, now)
	return false, sum, ev
}

// grow makes the per-key slices cover slot s.
func (t *serdTable[K]) grow(s uint32) {
	for int(s) >= len(t.used) {
		t.used = append(t.used, 0)
		for i := 0; i < t.slots; i++ {
			t.at = append(t.at, 0)
			t.n = append(t.n, 0)
			t.seq = append(t.seq, 0)
		}
	}
	t.used[s] = 0
}

// dropExpired removes slots at or before cutoff and returns the slots left.
func (t *serdTable[K]) dropExpired(base, used int, cutoff int64) int {
	drop := 0
	for drop < used && t.at[base+drop] <= cutoff {
		drop++
	}
	if drop == 0 {
		return used
	}
	copy(t.at[base:base+used-drop], t.at[base+drop:base+used])
	copy(t.n[base:base+used-drop], t.n[base+drop:base+used])
	copy(t.seq[base:base+used-drop], t.seq[base+drop:base+used])
	return used - drop
}

// mergeClosest folds the pair of adjacent slots closest in time into one,
// keeping the older time (see the type comment for why) and the newer
// evidence.
func (t *serdTable[K]) mergeClosest(base, used int) {
	best, gap := 0, int64(-1)
	for i := 0; i+1 < used; i++ {
		if g := t.at[base+i+1] - t.at[base+i]; gap < 0 || g < gap {
			best, gap = i, g
		}
	}
	i := base + best
	t.n[i] = addSat(t.n[i], t.n[i+1])
	t.seq[i] = t.seq[i+1]
	end := base + used
	copy(t.at[i+1:end-1], t.at[i+2:end])
	copy(t.n[i+1:end-1], t.n[i+2:end])
	copy(t.seq[i+1:end-1], t.seq[i+2:end])
}

// level is k's error count still in the window at now.
func (t *serdTable[K]) level(k K, now int64) uint64 {
	s, ok := t.keys.lookup(k)
	if !ok {
		return 0
	}
	base := int(s) * t.slots
	var sum uint64
	for i := 0; i < int(t.used[s]); i++ {
		if t.at[base+i] > now-t.window {
			sum += uint64(t.n[base+i])
		}
	}
	return sum
}

// forget drops k's state (reset, repair).
func (t *serdTable[K]) forget(k K) {
	if s, ok := t.keys.lookup(k); ok {
		t.keys.remove(s)
	}
}

func addSat(a, b uint32) uint32 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint32(0)
}
