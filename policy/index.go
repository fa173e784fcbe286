package policy

// keyIndex maps keys to table slots. Go maps serve the tables with few keys;
// pages, which can number millions and churn under a storm, use u64Index.
type keyIndex[K comparable] interface {
	get(k K) (uint32, bool)
	put(k K, slot uint32)
	del(k K)
	len() int
}

type mapIndex[K comparable] map[K]uint32

func (m mapIndex[K]) get(k K) (uint32, bool) { s, ok := m[k]; return s, ok }
func (m mapIndex[K]) put(k K, slot uint32)   { m[k] = slot }
func (m mapIndex[K]) del(k K)                { delete(m, k) }
func (m mapIndex[K]) len() int               { return len(m) }

// u64Index is an open-addressing hash table (linear probing, backward-shift
// deletion, so no tombstones) from uint64 keys to slots. Measured against a
// Go map of 1 M keys it is several times faster under the insert/evict
// churn of a storm. Key and slot share a bucket so a probe costs one
// cache miss, not two.
type u64Index struct {
	buckets []bucket
	shift   uint // 64 - log2(len(buckets))
	n       int
}

type bucket struct {
	key  uint64
	slot uint32 // none marks an empty bucket
}

func newU64Index() *u64Index {
	x := &u64Index{}
	x.resize(1 << 4) // grows on demand; replay keeps many small engines
	return x
}

func (x *u64Index) resize(buckets int) {
	old := x.buckets
	x.buckets = make([]bucket, buckets)
	for i := range x.buckets {
		x.buckets[i].slot = none
	}
	x.shift = 64
	for b := buckets; b > 1; b >>= 1 {
		x.shift--
	}
	x.n = 0
	for _, b := range old {
		if b.slot != none {
			x.put(b.key, b.slot)
		}
	}
}

// home is the key's preferred bucket: Fibonacci hashing spreads the
// sequential PFNs of a failing region evenly.
func (x *u64Index) home(k uint64) int { return int((k * 0x9E3779B97F4A7C15) >> x.shift) }

func (x *u64Index) mask() int { return len(x.buckets) - 1 }

func (x *u64Index) get(k uint64) (uint32, bool) {
	for i := x.home(k); ; i = (i + 1) & x.mask() {
		b := &x.buckets[i]
		if b.slot == none {
			return 0, false
		}
		if b.key == k {
			return b.slot, true
		}
	}
}

func (x *u64Index) put(k uint64, slot uint32) {
	if 2*(x.n+1) > len(x.buckets) {
		x.resize(2 * len(x.buckets))
	}
	i := x.home(k)
	for ; x.buckets[i].slot != none; i = (i + 1) & x.mask() {
		if x.buckets[i].key == k {
			x.buckets[i].slot = slot
			return
		}
	}
	x.buckets[i] = bucket{key: k, slot: slot}
	x.n++
}

func (x *u64Index) del(k uint64) {
	m := x.mask()
	i := x.home(k)
	for ; ; i = (i + 1) & m {
		if x.buckets[i].slot == none {
			return
		}
		if x.buckets[i].key == k {
			break
		}
	}
	// Shift back later entries whose probe sequence passed through i, so
	// lookups never stop early at the hole.
	for j := (i + 1) & m; x.buckets[j].slot != none; j = (j + 1) & m {
		h := x.home(x.buckets[j].key)
		if (j-h)&m >= (j-i)&m {
			x.buckets[i] = x.buckets[j]
			i = j
		}
	}
	x.buckets[i].slot = none
	x.n--
}

func (x *u64Index) len() int { return x.n }
