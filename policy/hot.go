package policy

import (
	"cmp"
	"slices"

	"github.com/selfprotect/selfprotect/fault"
)

// MaxHot bounds how many resources per rule Hottest reports, so the
// metrics' cardinality stays fixed however many resources are tracked.
const MaxHot = 5

// HotLevel is one resource's count under one rule, among the hottest.
type HotLevel struct {
	Rule      string
	Resource  fault.Resource
	Count     uint64 // errors, or distinct pages for the *-pages rules
	Threshold uint64
}

// hotList keeps the few keys of one rate table with the highest counts, so
// a scrape can show which resources are closest to tripping without
// scanning a table of up to engine.max_tracked keys under the lock the
// event path takes. Each add offers the level it left (a scan of MaxHot
// entries, no allocation). The stored levels go stale as errors leave the
// window or keys trip, are evicted or reset: an entry not offered within
// the window counts as cold when a new key asks for its place, trips drop
// their key, and Hottest re-reads every level. It is an approximation: a
// key refused while the list was full of hotter keys enters at its next
// error after they cooled down.
type hotList[K comparable] struct {
	keys  [MaxHot]K
	level [MaxHot]uint64
	at    [MaxHot]int64 // engine time the entry was last offered
	n     int
}

// note offers k at level at engine time now; entries last offered at or
// before cutoff have left the window.
func (h *hotList[K]) note(k K, level uint64, now, cutoff int64) {
	coldest, coldLevel := -1, uint64(0)
	for i := 0; i < h.n; i++ {
		if h.keys[i] == k {
			h.level[i], h.at[i] = level, now
			return
		}
		l := h.level[i]
		if h.at[i] <= cutoff {
			l = 0
		}
		if coldest < 0 || l < coldLevel {
			coldest, coldLevel = i, l
		}
	}
	switch {
	case level == 0:
	case h.n < MaxHot:
		h.keys[h.n], h.level[h.n], h.at[h.n] = k, level, now
		h.n++
	case level > coldLevel:
		h.keys[coldest], h.level[coldest], h.at[coldest] = k, level, now
	}
}

// drop forgets k (it tripped or was reset: a case holds it now).
func (h *hotList[K]) drop(k K) {
	for i := 0; i < h.n; i++ {
		if h.keys[i] == k {
			h.remove(i)
			return
		}
	}
}

func (h *hotList[K]) remove(i int) {
	h.n--
	h.keys[i], h.level[i], h.at[i] = h.keys[h.n], h.level[h.n], h.at[h.n]
	var zero K
	h.keys[h.n], h.level[h.n], h.at[h.n] = zero, 0, 0
}

// refresh re-reads every key's level and drops the keys at zero.
func (h *hotList[K]) refresh(level func(K) uint64) {
	for i := 0; i < h.n; {
		if l := level(h.keys[i]); l > 0 {
			h.level[i] = l
			i++
			continue
		}
		h.remove(i)
	}
}

func appendHot[K comparable](out []HotLevel, h *hotList[K], rule string, threshold uint64, name func(K) fault.Resource) []HotLevel {
	for i := 0; i < h.n; i++ {
		out = append(out, HotLevel{Rule: rule, Resource: name(h.keys[i]), Count: h.level[i], Threshold: threshold})
	}
	return out
}

// hot holds one list per rate table.
type hot struct {
	page       hotList[uint64]
	dimmErrors hotList[dimmKey]
	dimmPages  hotList[dimmKey]
	rowPages   hotList[string]
	cpu        hotList[int]
	cache      hotList[fault.Resource]
}

// Hottest returns, per rule, the resources with the highest counts still
// in the window at the newest time the engine has seen (at most MaxHot per
// rule, hottest first), and the machine's storm rate when the storm rule
// is on. It costs a few lookups per rule, whatever the engine tracks.
func (e *Engine) Hottest() []HotLevel {
	now := e.now
	h := &e.hot
	h.page.refresh(func(k uint64) uint64 { return e.page.level(k, now) })
	h.dimmErrors.refresh(func(k dimmKey) uint64 { return e.dimmErrors.level(k, now) })
	h.dimmPages.refresh(func(k dimmKey) uint64 { return uint64(e.dimmPages.level(k, now)) })
	h.rowPages.refresh(func(k string) uint64 { return uint64(e.rowPages.level(k, now)) })
	h.cpu.refresh(func(k int) uint64 { return e.cpu.level(k, now) })
	h.cache.refresh(func(k fault.Resource) uint64 { return e.cache.level(k, now) })

	r := &e.cfg.Rules
	var out []HotLevel
	out = appendHot(out, &h.page, RulePage, e.page.threshold, fault.Page)
	out = appendHot(out, &h.dimmErrors, RuleDIMM, e.dimmErrors.threshold, dimmResource)
	out = appendHot(out, &h.dimmPages, RuleDIMM+"-pages", uint64(r.DIMM.DistinctPages), dimmResource)
	out = appendHot(out, &h.rowPages, RuleRow+"-pages", uint64(r.Row.DistinctPages), fault.Row)
	out = appendHot(out, &h.cpu, RuleCPU, e.cpu.threshold, fault.CPU)
	out = appendHot(out, &h.cache, RuleCache, e.cache.threshold, func(r fault.Resource) fault.Resource { return r })
	slices.SortFunc(out, func(a, b HotLevel) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(b.Count, a.Count), cmp.Compare(a.Resource, b.Resource))
	})
	if r.Storm.Enabled {
		out = append(out, HotLevel{Rule: RuleStorm, Resource: fault.Machine, Count: e.storm.rate.sum(now), Threshold: e.storm.limit})
	}
	return out
}
