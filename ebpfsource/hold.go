package ebpfsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/selfprotect/selfprotect/fault"
)

// HoldAggregation makes the probes send every record on its own, past any
// per-key rate, until ReleaseAggregation: each record then reaches
// userspace as itself, and a record another reader of the same tracepoints
// also delivers (tracefs, while one source hands over to the other) can be
// matched against its twin one for one. A count of aggregated records
// could not be: nobody can tell which of a key's records it stands for.
// A record that finds the ring buffer full is still counted under its key
// (bpf/probes.c), so a full ring loses nothing, but that record cannot be
// matched; ReleaseAggregation says how many there were.
func (s *Source) HoldAggregation() error {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	if st, err := s.Stats(); err == nil {
		s.heldFullFrom = ringbufFull(st)
	}
	return s.setHold(1)
}

// ReleaseAggregation lets the probes count storms in the kernel again. It
// returns how many records found the ring buffer full since aggregation
// was held (counted in the kernel rather than sent; an upper bound, as the
// counters are read after the release).
func (s *Source) ReleaseAggregation() (uint64, error) {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	if err := s.setHold(0); err != nil {
		return 0, err
	}
	st, err := s.Stats()
	if err != nil {
		return 0, err
	}
	return ringbufFull(st) - min(s.heldFullFrom, ringbufFull(st)), nil
}

func (s *Source) setHold(v uint32) error {
	m := s.coll.Maps[probesMapHold]
	if m == nil {
		return errors.New("BPF object has no hold map")
	}
	if err := m.Put(uint32(0), v); err != nil {
		return fmt.Errorf("setting the probes' aggregation hold to %d: %w", v, err)
	}
	return nil
}

func ringbufFull(st Stats) uint64 {
	var n uint64
	for _, p := range st.Probes {
		n += p.RingbufFull
	}
	return n
}

// Salvage delivers what the probes collected that Run did not: every
// record the ring buffer still holds, then every count in the aggregation
// maps not yet reported. It is for a source whose Run failed: the probes
// stay attached until Close, so a caller that first arms another reader of
// the same tracepoints (and holds aggregation, so what both deliver can be
// matched) and then salvages this one leaves no record unread between the
// two. It never waits for a wake-up. It returns how many events it sent,
// and the first read error, after the maps were read (they do not depend
// on the ring buffer).
func (s *Source) Salvage(ctx context.Context, out chan<- fault.Event) (int, error) {
	var rec ringbuf.Record
	var readErr error
	before := s.counts.events.Load()
	for ctx.Err() == nil {
		s.reader.SetDeadline(time.Unix(1, 0)) // never wait: hand out what the ring holds
		err := s.reader.ReadInto(&rec)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				readErr = fmt.Errorf("salvaging the BPF ring buffer: %w", err)
			}
			break
		}
		// A notice asks for a sweep: the one below.
		s.handle(ctx, rec.RawSample, out)
	}
	s.sweep(ctx, out, true)
	return int(s.counts.events.Load() - before), readErr
}

// dieForTest makes Run fail cfg.TestDieAfter after it started, as a reader
// that breaks in a storm would: it closes the descriptor Run waits on, so
// Run ends at its next wait (the ring buffer then empty, the maps' counts
// not swept, the probes attached), and the returned func, deferred by Run,
// turns that end into an error that says why. Test only.
func (s *Source) dieForTest() func(*error) {
	var died atomic.Bool
	t := time.AfterFunc(s.cfg.TestDieAfter, func() {
		died.Store(true)
		_ = s.ring.Close()
	})
	return func(err *error) {
		t.Stop()
		// Run ends with nil or with the closed descriptor's error.
		if died.Load() {
			*err = fmt.Errorf("reading the BPF ring buffer: failing %s after start as a test asked (--test-ebpf-die-after)", s.cfg.TestDieAfter)
		}
	}
}
