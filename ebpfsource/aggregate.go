package ebpfsource

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/fault"
)

// sweep reads the aggregation maps and sends, for each key whose error
// total grew since the last sweep, one event built from the key's last
// record with Count set to the growth. It returns whether any key grew.
// Userspace work per sweep grows with the number of keys (distinct pages,
// CPUs and banks), not with the number of errors.
//
// It reads the probes' counters first: a map whose probe counted nothing
// new since the last sweep is not walked (an idle sweep is five lookups,
// a storm's walks the maps that storm). The probe bumps its aggregated
// counter after the key's, so a map is never skipped with a count in it
// that was not reported. full walks every map (the last sweep, or the
// counters unreadable).
func (s *Source) sweep(ctx context.Context, out chan<- fault.Event, full bool) bool {
	s.counts.sweeps.Add(1)
	aggregated, err := s.readCounters()
	if err != nil {
		s.log.WithError(err).Warn("reading the probe counters; reading every aggregation map")
		full = true
	}
	grew := false
	for _, p := range s.attached {
		if !full {
			if aggregated[p.kind] == s.aggregated[p.kind] {
				continue
			}
			s.aggregated[p.kind] = aggregated[p.kind]
		}
		raw, err := s.rawMaps()
		if err != nil {
			s.log.WithFields(logrus.Fields{"map": p.aggMap, "error": err.Error()}).Warn("reading an aggregation map")
			continue
		}
		ended := false
		err = raw.agg[p.kind].each(func(k, val []byte) bool {
			errs := binary.LittleEndian.Uint64(val[16:])
			key := decodeKey(k)
			prev := s.reported[key]
			if errs <= prev {
				return true
			}
			grew = true
			s.reported[key] = errs
			if !s.sendAggregate(ctx, p, val[aggHeadSize:], errs-prev, out) {
				ended = true
				return false
			}
			return true
		})
		if ended {
			return grew
		}
		if err != nil {
			s.log.WithFields(logrus.Fields{"map": p.aggMap, "error": err.Error()}).Warn("reading an aggregation map")
		}
	}
	return grew
}

// decodeKey reads struct sp_key as the probes wrote it.
func decodeKey(k []byte) probesSpKey {
	le := binary.LittleEndian
	return probesSpKey{Page: le.Uint64(k), Sig: le.Uint64(k[8:]), Cpu: le.Uint32(k[16:]),
		Bank: le.Uint16(k[20:]), Kind: le.Uint16(k[22:])}
}

// readCounters reads every attached probe's counters, keeps their sums
// for Totals and returns each probe's aggregated count by kind.
func (s *Source) readCounters() ([numKinds]uint64, error) {
	var agg [numKinds]uint64
	var t Totals
	raw, err := s.rawMaps()
	if err != nil {
		return agg, err
	}
	r := raw.stats
	var key [4]byte
	for _, p := range s.attached {
		binary.LittleEndian.PutUint32(key[:], p.kind)
		if err := r.lookup(key[:]); err != nil {
			return agg, fmt.Errorf("reading the probe counters of %s: %w", p.Key(), err)
		}
		for v := r.value; len(v) >= statsSize; v = v[statsSlot:] {
			le := binary.LittleEndian
			t.Sent += le.Uint64(v[8:])
			agg[p.kind] += le.Uint64(v[16:])
			t.RingbufFull += le.Uint64(v[24:])
			t.Lost += le.Uint64(v[32:])
		}
		t.Aggregated += agg[p.kind]
	}
	c := &s.counts
	c.kernelSent.Store(t.Sent)
	c.kernelAggregated.Store(t.Aggregated)
	c.kernelRingbufFull.Store(t.RingbufFull)
	c.kernelLost.Store(t.Lost)
	return agg, nil
}

// sendAggregate decodes a key's last record and sends it standing for n
// errors. It returns false when ctx ended.
func (s *Source) sendAggregate(ctx context.Context, p probe, last []byte, n uint64, out chan<- fault.Event) bool {
	events, ok := s.decode(p.kind, last, s.cfg.Now())
	if !ok {
		return true
	}
	if len(events) != 1 {
		// A decoder that splits one record into several events leaves no
		// single event to carry the total; nothing does that today.
		s.log.WithFields(logrus.Fields{"event": p.Key(), "events": len(events)}).Warn("aggregated record decoded into other than one event; its count is dropped")
		return true
	}
	ev := events[0]
	ev.Count = uint32(min(n, math.MaxUint32))
	s.counts.aggregateEvents.Add(1)
	select {
	case out <- ev:
		s.counts.events.Add(1)
		return true
	case <-ctx.Done():
		return false
	}
}

// ProbeStats are one probe's kernel-side counters, summed over CPUs.
// Seen = Sent + Aggregated + Lost: every record the probe saw was either
// sent to userspace or counted in its aggregation map, except Lost ones,
// which found both the ring buffer and the aggregation map full.
type ProbeStats struct {
	Seen, Sent, Aggregated, RingbufFull, Lost uint64
}

// Stats are the source's counters since Open.
type Stats struct {
	// Probes are keyed "system/name" for every attached probe.
	Probes map[string]ProbeStats
	// Userspace side.
	Records         uint64 // records read from the ring buffer (not notices)
	Decoded         uint64 // records (or aggregates) a decoder accepted
	Events          uint64 // events sent
	AggregateEvents uint64 // events that carry a kernel-side count
	Undecodable     uint64
	NoDecoder       uint64
	Malformed       uint64
	Notices         uint64 // storm notices from the probes
	Sweeps          uint64
}

// Totals are the kernel-side counters summed over probes, as of the last
// sweep (at most Backstop old while idle, Sweep during a storm). Cheap:
// no syscall, safe from any goroutine.
type Totals struct {
	Sent, Aggregated, RingbufFull, Lost uint64
}

// Totals returns the counters the last sweep read.
func (s *Source) Totals() Totals {
	c := &s.counts
	return Totals{Sent: c.kernelSent.Load(), Aggregated: c.kernelAggregated.Load(),
		RingbufFull: c.kernelRingbufFull.Load(), Lost: c.kernelLost.Load()}
}

// Stats reads the kernel counters and the userspace ones.
func (s *Source) Stats() (Stats, error) {
	c := &s.counts
	st := Stats{
		Probes:  map[string]ProbeStats{},
		Records: c.records.Load(), Decoded: c.decoded.Load(), Events: c.events.Load(),
		AggregateEvents: c.aggregateEvents.Load(), Undecodable: c.undecodable.Load(),
		NoDecoder: c.noDecoder.Load(), Malformed: c.malformed.Load(), Notices: c.notices.Load(),
		Sweeps: c.sweeps.Load(),
	}
	for _, p := range s.attached {
		var perCPU []probesSpStats
		if err := s.stats.Lookup(p.kind, &perCPU); err != nil {
			return st, fmt.Errorf("reading the probe counters of %s: %w", p.Key(), err)
		}
		var ps ProbeStats
		for _, v := range perCPU {
			ps.Seen += v.Seen
			ps.Sent += v.Sent
			ps.Aggregated += v.Aggregated
			ps.RingbufFull += v.RingbufFull
			ps.Lost += v.Lost
		}
		st.Probes[p.Key()] = ps
	}
	return st, nil
}
