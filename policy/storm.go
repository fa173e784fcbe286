package policy

import "time"

// stormBuckets splits the storm's averaging window; the sum covers between
// (stormBuckets-1)/stormBuckets and all of it.
const stormBuckets = 20

// rateWindow counts errors over a sliding window in fixed buckets: O(1)
// memory and a few adds per event, whatever the rate.
type rateWindow struct {
	width  int64
	counts [stormBuckets]uint64
	stamp  [stormBuckets]int64 // bucket number each entry currently holds
}

func newRateWindow(over time.Duration) rateWindow {
	w := rateWindow{width: max(int64(over)/stormBuckets, 1)}
	for i := range w.stamp {
		w.stamp[i] = -1 << 62
	}
	return w
}

func (w *rateWindow) bucket(now int64) int64 {
	b := now / w.width
	if now < 0 && now%w.width != 0 {
		b--
	}
	return b
}

func (w *rateWindow) add(now int64, n uint64) {
	b := w.bucket(now)
	i := int(((b % stormBuckets) + stormBuckets) % stormBuckets)
	if w.stamp[i] != b {
		if b < w.stamp[i] {
			return // older than the window: it cannot make a storm now
		}
		w.stamp[i], w.counts[i] = b, 0
	}
	w.counts[i] += n
}

// sum is the number of errors in the window ending at now.
func (w *rateWindow) sum(now int64) uint64 {
	b := w.bucket(now)
	var s uint64
	for i := range w.counts {
		if w.stamp[i] > b-stormBuckets && w.stamp[i] <= b {
			s += w.counts[i]
		}
	}
	return s
}

// StormEnd tells the daemon a storm is over so it can close the storm case
// and resume per-event logging.
type StormEnd struct {
	CaseID  string
	Started time.Time
	Ended   time.Time
}

// stormState is the machine-wide storm detector.
type stormState struct {
	rate      rateWindow
	limit     uint64 // errors in the window above which it is a storm
	quiet     int64
	active    bool
	caseID    string
	started   time.Time
	below     bool
	belowFrom int64
}

func newStormState(r StormRule) stormState {
	return stormState{
		rate:  newRateWindow(r.Over),
		limit: uint64(r.Rate * r.Over.Seconds()),
		quiet: int64(r.Quiet),
	}
}

// count adds corrected errors and reports whether a storm starts now.
func (s *stormState) count(now int64, n uint64) (starts bool, inWindow uint64) {
	s.rate.add(now, n)
	sum := s.rate.sum(now)
	if !s.active {
		return sum > s.limit, sum
	}
	s.track(now, sum)
	return false, sum
}

// track follows how long the rate has stayed at or below the limit.
func (s *stormState) track(now int64, sum uint64) {
	if sum > s.limit {
		s.below = false
		return
	}
	if !s.below {
		s.below, s.belowFrom = true, now
	}
}

// ended reports whether an active storm has been quiet long enough at now.
func (s *stormState) ended(now int64) bool {
	if !s.active {
		return false
	}
	s.track(now, s.rate.sum(now))
	return s.below && now-s.belowFrom >= s.quiet
}
