package policy

// none marks the end of the recency list and the free list.
const none = ^uint32(0)

// lru is the key index shared by the rate tables: a map from key to a slot
// number, the slots kept on a recency list (most recently updated first).
// Tables keep their per-key state in their own slices indexed by slot, so a
// tracked page costs a map entry, a few parallel slice elements and no
// pointer the garbage collector has to chase.
//
// The list gives both bounds the engine needs in O(1) per event: the tail is
// the key whose newest error is oldest, so expiry pops from the tail until
// it meets a live key, and at the key cap the tail is the one evicted.
type lru[K comparable] struct {
	index      keyIndex[K]
	keys       []K
	prev, next []uint32
	last       []int64 // newest update, engine nanoseconds
	head, tail uint32
	free       uint32 // free slots, chained through next
	max        int

	expired, evicted uint64
	// onRemove lets the owning table drop the slot's state.
	onRemove func(slot uint32)
}

// newLRU builds the index; a nil index means a Go map.
func newLRU[K comparable](index keyIndex[K], max int, onRemove func(uint32)) lru[K] {
	if index == nil {
		index = mapIndex[K]{}
	}
	return lru[K]{index: index, head: none, tail: none, free: none, max: max, onRemove: onRemove}
}

func (l *lru[K]) len() int { return l.index.len() }

func (l *lru[K]) lookup(k K) (uint32, bool) {
	return l.index.get(k)
}

// insert tracks a new key, evicting the least recently updated key when the
// cap is reached. The slot's table state must be initialised by the caller.
func (l *lru[K]) insert(k K, now int64) uint32 {
	if l.index.len() >= l.max && l.tail != none {
		l.remove(l.tail)
		l.evicted++
	}
	var s uint32
	if l.free != none {
		s = l.free
		l.free = l.next[s]
		l.keys[s] = k
		l.last[s] = now
	} else {
		s = uint32(len(l.keys))
		l.keys = append(l.keys, k)
		l.prev = append(l.prev, none)
		l.next = append(l.next, none)
		l.last = append(l.last, now)
	}
	l.index.put(k, s)
	l.pushFront(s)
	return s
}

// touch records an update of slot s at now and makes it the most recent.
func (l *lru[K]) touch(s uint32, now int64) {
	if now > l.last[s] {
		l.last[s] = now
	}
	if l.head == s {
		return
	}
	l.unlink(s)
	l.pushFront(s)
}

// remove forgets slot s.
func (l *lru[K]) remove(s uint32) {
	if l.onRemove != nil {
		l.onRemove(s)
	}
	l.index.del(l.keys[s])
	var zero K
	l.keys[s] = zero
	l.unlink(s)
	l.next[s] = l.free
	l.free = s
}

// expire forgets up to budget keys whose newest update is at or before
// cutoff, oldest first. A negative budget means no limit.
func (l *lru[K]) expire(cutoff int64, budget int) {
	for l.tail != none && budget != 0 && l.last[l.tail] <= cutoff {
		l.remove(l.tail)
		l.expired++
		budget--
	}
}

func (l *lru[K]) pushFront(s uint32) {
	l.prev[s] = none
	l.next[s] = l.head
	if l.head != none {
		l.prev[l.head] = s
	}
	l.head = s
	if l.tail == none {
		l.tail = s
	}
}

func (l *lru[K]) unlink(s uint32) {
	p, n := l.prev[s], l.next[s]
	if p != none {
		l.next[p] = n
	} else if l.head == s {
		l.head = n
	}
	if n != none {
		l.prev[n] = p
	} else if l.tail == s {
		l.tail = p
	}
	l.prev[s], l.next[s] = none, none
}
