package tracefs

import (
	"context"
	"encoding/hex"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/fault"
)

// warnEvery bounds how often a kind of per-record warning is logged: a
// storm of bad records must not become a storm of log lines.
const warnEvery = 10 * time.Second

// SourceStats are the Source's counters since NewSource.
type SourceStats struct {
	Pages        uint64 // pages read
	CorruptPages uint64 // pages with a structural error (their good records still count)
	Records      uint64 // data records found, known ID or not
	Decoded      uint64 // records a decoder accepted
	Events       uint64 // fault.Events sent
	Undecodable  uint64 // records a decoder rejected
	UnknownID    uint64 // records whose event ID has no format
	NoDecoder    uint64 // records of an enabled event nobody decodes
	Missed       uint64 // events the kernel reported lost before a page
	LostUnknown  uint64 // pages after a loss of unknown size
}

type sourceCounters struct {
	pages, corrupt, records, decoded, events, undecodable, unknownID, noDecoder, missed, lostUnknown atomic.Uint64
}

// Source reads the instance's per-CPU ring buffers and turns records into
// fault.Events through the decoders registered for their event.
type Source struct {
	inst    *Instance
	byID    map[uint16]Decoder
	log     logrus.FieldLogger
	now     func() time.Time
	counts  sourceCounters
	limiter *warnLimiter
	sweep   time.Duration

	// draining is shared by every reader of Run; pipes are Run's open
	// files, so StopAfterDrain can wake the readers.
	draining atomic.Bool
	mu       sync.Mutex
	pipes    []*cpuPipe
}

// NewSource binds decoders (keyed "system/name") to the instance's enabled
// events. now stamps each page's records with their receive time; nil means
// time.Now.
func NewSource(inst *Instance, decoders map[string]Decoder, log logrus.FieldLogger, now func() time.Time) *Source {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = discardLogger()
	}
	s := &Source{inst: inst, byID: map[uint16]Decoder{}, log: log.WithField("source", "tracefs"), now: now, limiter: newWarnLimiter(warnEvery), sweep: DefaultSweep}
	for key, d := range decoders {
		f, ok := inst.Formats().ByName(key)
		if !ok {
			s.log.Debugf("no enabled event %s for its decoder", key)
			continue
		}
		s.byID[f.ID] = d
	}
	for _, f := range inst.Formats().All() {
		if _, ok := s.byID[f.ID]; !ok {
			s.log.Debugf("event %s is enabled but has no decoder; its records are counted and skipped", f.Key())
		}
	}
	return s
}

// Name implements fault.EventSource.
func (s *Source) Name() string { return "tracefs" }

// SetSweep changes how often the buffers are checked for records whose
// wake-up was lost (DefaultSweep); call it before Run.
func (s *Source) SetSweep(d time.Duration) {
	if d > 0 {
		s.sweep = d
	}
}

// StopAfterDrain makes Run read every CPU's buffer until it is empty and
// then return nil, without waiting for a wake-up: a source taking over
// from this one (eBPF attached to the same tracepoints) gets every record
// from its attach on, and this one delivers every record before that.
func (s *Source) StopAfterDrain() {
	s.draining.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pipes {
		_ = p.f.SetReadDeadline(time.Now())
	}
}

// Stats returns the counters.
func (s *Source) Stats() SourceStats {
	c := &s.counts
	return SourceStats{
		Pages: c.pages.Load(), CorruptPages: c.corrupt.Load(), Records: c.records.Load(),
		Decoded: c.decoded.Load(), Events: c.events.Load(), Undecodable: c.undecodable.Load(),
		UnknownID: c.unknownID.Load(), NoDecoder: c.noDecoder.Load(), Missed: c.missed.Load(),
		LostUnknown: c.lostUnknown.Load(),
	}
}

// Run reads every CPU's buffer until ctx ends (nil) or a read fails (the
// error; the other CPUs are stopped). Corrupt pages and decoder errors are
// counted and logged, never fatal.
func (s *Source) Run(ctx context.Context, out chan<- fault.Event) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var pipes []*cpuPipe
	for _, cpu := range s.inst.CPUs() {
		p, err := openPipe(cpu, s.inst.PipePath(cpu))
		if err != nil {
			for _, q := range pipes {
				q.f.Close()
			}
			return err
		}
		p.draining = &s.draining
		pipes = append(pipes, p)
	}
	s.mu.Lock()
	s.pipes = pipes
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.pipes = nil
		s.mu.Unlock()
	}()
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		sweepPipes(ctx, pipes, s.sweep, func(err error) {
			s.log.WithError(err).Warn("the never-late sweep ticks from a runtime timer: it costs more wake-ups when idle")
		})
	}()
	// Closing the files is what wakes the blocked reads; the sweeper polls
	// their descriptors, so it stops first.
	closed := make(chan struct{})
	go func() {
		<-ctx.Done()
		<-swept
		for _, p := range pipes {
			p.f.Close()
		}
		close(closed)
	}()
	errs := make(chan error, len(pipes))
	var wg sync.WaitGroup
	for _, p := range pipes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res PageResult
			err := p.readPages(ctx, s.inst.SubBufferSize(), func(page []byte) bool {
				return s.handlePage(ctx, p.cpu, page, &res, out)
			})
			if err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	cancel()
	<-closed
	close(errs)
	return <-errs // nil when no reader failed
}

// handlePage parses one page and dispatches its records. It returns false
// when ctx ended while sending.
func (s *Source) handlePage(ctx context.Context, cpu int, page []byte, res *PageResult, out chan<- fault.Event) bool {
	received := s.now()
	c := &s.counts
	// A page counts as read once its events are handed on: a page count
	// that matches what the kernel wrote then means nothing is still in
	// the reader.
	defer c.pages.Add(1)
	err := parsePageInto(page, cpu, s.inst.Formats(), res)
	if err != nil {
		c.corrupt.Add(1)
		s.warn(received, "corrupt-page", logrus.Fields{"cpu": cpu, "error": err.Error()}, "skipping the damaged part of a ring-buffer page")
	}
	c.records.Add(uint64(len(res.Records) + res.Unknown))
	c.unknownID.Add(uint64(res.Unknown))
	if res.Lost() {
		c.missed.Add(res.Missed)
		if res.MissedUnknown {
			c.lostUnknown.Add(1)
		}
		s.warn(received, "lost", logrus.Fields{"cpu": cpu, "missed": res.Missed, "count_known": !res.MissedUnknown},
			"the kernel lost trace events before this page")
	}
	sent := false
	for i := range res.Records {
		rec := &res.Records[i]
		decode, ok := s.byID[rec.Format.ID]
		if !ok {
			c.noDecoder.Add(1)
			continue
		}
		events, err := safeDecode(decode, rec, received)
		if err != nil {
			c.undecodable.Add(1)
			s.warn(received, "decode:"+rec.Format.Key(), logrus.Fields{
				"event": rec.Format.Key(), "cpu": cpu, "ts": rec.TS, "record": hex.EncodeToString(rec.Data), "error": err.Error(),
			}, "cannot decode trace record")
			continue
		}
		c.decoded.Add(1)
		for _, ev := range events {
			select {
			case out <- ev:
				c.events.Add(1)
				sent = true
			case <-ctx.Done():
				return false
			}
		}
	}
	if sent {
		// Let the main loop take the page's records before this reader
		// reads on and re-arms its wait: on a daemon with one CPU that
		// work otherwise came between a deciding record and its diagnosis.
		runtime.Gosched()
	}
	return true
}

// safeDecode keeps a decoder bug on one strange record from killing the
// source.
func safeDecode(d Decoder, rec *Record, received time.Time) (events []fault.Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			events, err = nil, fmt.Errorf("decoder panicked: %v", r)
		}
	}()
	return d(rec, received)
}

func (s *Source) warn(now time.Time, kind string, fields logrus.Fields, msg string) {
	ok, suppressed := s.limiter.allow(kind, now)
	if !ok {
		return
	}
	if suppressed > 0 {
		fields["suppressed"] = suppressed
	}
	s.log.WithFields(fields).Warn(msg)
}

// warnLimiter lets one warning of each kind through per interval and
// counts the ones it held back.
type warnLimiter struct {
	every time.Duration
	mu    sync.Mutex
	kinds map[string]*warnState
}

type warnState struct {
	last       time.Time
	suppressed int
}

func newWarnLimiter(every time.Duration) *warnLimiter {
	return &warnLimiter{every: every, kinds: map[string]*warnState{}}
}

// allow says whether to log now, and how many were held back since the
// last one logged.
func (l *warnLimiter) allow(kind string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.kinds[kind]
	if !ok {
		l.kinds[kind] = &warnState{last: now}
		return true, 0
	}
	if now.Sub(st.last) < l.every {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	return true, n
}

var _ fault.EventSource = (*Source)(nil)
