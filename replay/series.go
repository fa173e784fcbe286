package replay

import (
	"sort"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

const week = 7 * 24 * time.Hour

// seriesKey names one DIMM of one host.
type seriesKey struct {
	host string
	dimm dimmID
}

// dimmSeries counts one DIMM's corrected errors per week (a fixed small
// cost per DIMM, so a fleet year stays in memory) and its first UE.
type dimmSeries struct {
	total uint64
	week0 int64 // Unix week of weeks[0]
	weeks []uint32
	ue    time.Time
}

// DIMMSeries is one DIMM's error history for the report.
type DIMMSeries struct {
	Host, Label string
	MC          int
	Total       uint64
	Start       time.Time // start of the first week
	Weekly      []uint32
	FirstUE     time.Time // zero when none
}

func (r *Replayer) series(h *host, d dimmID) *dimmSeries {
	k := seriesKey{host: h.name, dimm: d}
	s := r.dimms[k]
	if s == nil {
		s = &dimmSeries{week0: -1}
		if r.dimms == nil {
			r.dimms = map[seriesKey]*dimmSeries{}
		}
		r.dimms[k] = s
	}
	return s
}

// tally adds corrected errors on a labelled DIMM.
func (r *Replayer) tally(h *host, ev *fault.Event, count uint32) {
	if ev.Class != fault.ClassMemory || ev.DIMMLabel == "" ||
		(ev.Severity != fault.SeverityCorrected && ev.Severity != fault.SeverityDeferred) {
		return
	}
	s := r.series(h, dimmID{mc: ev.MC, label: ev.DIMMLabel})
	w := ev.Received.Unix() / int64(week/time.Second)
	if s.week0 < 0 {
		s.week0 = w
	}
	i := int(w - s.week0)
	if i < 0 {
		return // a host's records are in time order; only a merged view can be older
	}
	for len(s.weeks) <= i {
		s.weeks = append(s.weeks, 0)
	}
	s.weeks[i] += count
	s.total += uint64(count)
}

// topDIMMs returns the n DIMMs with the most corrected errors.
func (r *Replayer) topDIMMs(n int) []DIMMSeries {
	keys := make([]seriesKey, 0, len(r.dimms))
	for k, s := range r.dimms {
		if s.total > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := r.dimms[keys[i]], r.dimms[keys[j]]
		if a.total != b.total {
			return a.total > b.total
		}
		if keys[i].host != keys[j].host {
			return keys[i].host < keys[j].host
		}
		return keys[i].dimm.label < keys[j].dimm.label
	})
	var out []DIMMSeries
	for _, k := range keys[:min(n, len(keys))] {
		s := r.dimms[k]
		out = append(out, DIMMSeries{Host: k.host, Label: k.dimm.label, MC: k.dimm.mc, Total: s.total,
			Start: time.Unix(s.week0*int64(week/time.Second), 0).UTC(), Weekly: append([]uint32(nil), s.weeks...), FirstUE: s.ue})
	}
	return out
}
