package alert

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Clock is the dispatcher's time, a fake in tests.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time                         { return time.Now() }
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// DispatcherConfig holds what the dispatcher needs besides the queue.
type DispatcherConfig struct {
	Notifiers      []NamedNotifier
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Clock          Clock
	Log            logrus.FieldLogger
	// Jitter returns a duration in [0, d); math/rand when nil.
	Jitter func(d time.Duration) time.Duration
}

// Dispatcher drains the outbox: it sends each due delivery through its
// notifier, at most Concurrency at once per notifier, acknowledges
// successes and reschedules failures with exponential backoff and jitter.
// Nothing it does blocks whoever queues alerts: they only Kick it.
type Dispatcher struct {
	q      Queue
	cfg    DispatcherConfig
	byName map[string]*slot
	names  []string
	kick   chan struct{}

	mu    sync.Mutex
	stats map[string]*NotifierStats
}

// slot is one notifier's in-flight set, capped at its concurrency; only
// Run's goroutine touches it.
type slot struct {
	n        NamedNotifier
	limit    int
	inflight map[int64]bool
}

// NotifierStats is what status and metrics show per notifier.
type NotifierStats struct {
	Sent        int64
	Failed      int64 // failed attempts, retried or not
	Dead        int64 // deliveries given up (retrying could not help)
	InFlight    int
	LastSuccess time.Time
	LastError   string
	LastErrorAt time.Time
}

// NewDispatcher builds a dispatcher over q. Run starts it.
func NewDispatcher(q Queue, cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		cfg.Log = l
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return rand.N(d)
		}
	}
	if cfg.InitialBackoff <= 0 || cfg.MaxBackoff < cfg.InitialBackoff {
		return nil, fmt.Errorf("dispatcher: backoff must satisfy 0 < initial (%s) <= max (%s)", cfg.InitialBackoff, cfg.MaxBackoff)
	}
	d := &Dispatcher{q: q, cfg: cfg, byName: map[string]*slot{}, kick: make(chan struct{}, 1), stats: map[string]*NotifierStats{}}
	for _, n := range cfg.Notifiers {
		if _, dup := d.byName[n.Name]; dup {
			return nil, fmt.Errorf("dispatcher: notifier %q configured twice", n.Name)
		}
		if n.Timeout <= 0 {
			n.Timeout = DefaultTimeout // zero would expire every send at once
		}
		d.byName[n.Name] = &slot{n: n, limit: max(n.Concurrency, 1), inflight: map[int64]bool{}}
		d.names = append(d.names, n.Name)
		d.stats[n.Name] = &NotifierStats{}
	}
	return d, nil
}

// Kick tells the dispatcher new deliveries are due. It never blocks.
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Stats returns a copy of every notifier's counters.
func (d *Dispatcher) Stats() map[string]NotifierStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]NotifierStats, len(d.stats))
	for k, v := range d.stats {
		out[k] = *v
	}
	return out
}

type result struct {
	slot  *slot
	del   Delivery
	retry bool
	err   error
}

// Run sends until ctx ends, then cancels the sends in flight and waits for
// them. Deliveries interrupted that way stay pending and go out after the
// next start.
func (d *Dispatcher) Run(ctx context.Context) error {
	if len(d.names) == 0 {
		<-ctx.Done()
		return nil
	}
	sendCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	results := make(chan result)
	for {
		d.pass(sendCtx, &wg, results)
		wait := d.untilNext()
		select {
		case <-ctx.Done():
			cancel()
			// Record what the senders still report: a send that completed
			// just now is acknowledged instead of repeated after restart.
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			for {
				select {
				case r := <-results:
					d.finish(r)
				case <-done:
					return nil
				}
			}
		case r := <-results:
			d.finish(r)
		case <-d.kick:
		case <-d.cfg.Clock.After(wait):
		}
	}
}

// pass starts a send for every due delivery a free slot can take.
func (d *Dispatcher) pass(ctx context.Context, wg *sync.WaitGroup, results chan<- result) {
	now := d.cfg.Clock.Now()
	for _, name := range d.names {
		s := d.byName[name]
		free := s.limit - len(s.inflight)
		if free <= 0 {
			continue
		}
		due, err := d.q.Due(now, name, free+len(s.inflight))
		if err != nil {
			d.cfg.Log.WithError(err).WithField("notifier", name).Error("reading the alert outbox")
			continue
		}
		for _, del := range due {
			if s.inflight[del.ID] || len(s.inflight) >= s.limit {
				continue
			}
			s.inflight[del.ID] = true
			d.setInFlight(name, len(s.inflight))
			wg.Add(1)
			go func() {
				defer wg.Done()
				retry, err := d.send(ctx, s.n, del.Alert)
				results <- result{slot: s, del: del, retry: retry, err: err}
			}()
		}
	}
}

func (d *Dispatcher) send(ctx context.Context, n NamedNotifier, a Alert) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, n.Timeout)
	defer cancel()
	defer func() {
		// A notifier bug must not take the daemon down with it.
		if p := recover(); p != nil {
			retry, err = true, fmt.Errorf("notifier panicked: %v", p)
		}
	}()
	retry, err = n.Notifier.Notify(ctx, a)
	if err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			err = fmt.Errorf("timed out after %s: %w", n.Timeout, err)
			retry = true
		case ctx.Err() != nil: // shutting down: the next start sends it
			retry = true
		}
	}
	return retry, err
}

// finish records a send's outcome in the queue and the stats.
func (d *Dispatcher) finish(r result) {
	name := r.slot.n.Name
	delete(r.slot.inflight, r.del.ID)
	d.setInFlight(name, len(r.slot.inflight))
	now := d.cfg.Clock.Now()
	log := d.cfg.Log.WithFields(logrus.Fields{
		"notifier": name, "alert": r.del.Alert.ID, "case": r.del.Alert.Case,
		"transition": r.del.Alert.Transition, "attempt": r.del.Attempts + 1,
	})
	// The stats change before the queue does: whoever sees the queue's
	// record (status, a test) must find the stats already agreeing.
	if r.err == nil {
		d.update(name, func(s *NotifierStats) { s.Sent++; s.LastSuccess = now })
		if err := d.q.Ack(r.del.ID, now); err != nil {
			// Sent but not recorded: the next start sends it again, once;
			// the receiver drops the copy by its ID.
			log.WithError(err).Error("alert sent but its delivery could not be recorded")
		}
		log.Info("alert sent")
		return
	}
	next := now.Add(d.Backoff(r.del.Attempts))
	d.update(name, func(s *NotifierStats) {
		s.Failed++
		s.LastError, s.LastErrorAt = r.err.Error(), now
		if !r.retry {
			s.Dead++
		}
	})
	if err := d.q.Fail(r.del.ID, now, next, r.err.Error(), !r.retry); err != nil {
		log.WithError(err).Error("recording a failed alert delivery")
	}
	if r.retry {
		log.WithError(r.err).WithField("retry_at", next).Warn("alert not sent; will retry")
	} else {
		log.WithError(r.err).Error("alert not sent; retrying cannot help, giving up")
	}
}

// Backoff is the wait after the (attempts+1)-th failure: the initial
// backoff doubled per earlier failure, capped at the maximum, of which the
// upper half is random so notifiers that failed together do not retry in
// lockstep.
func (d *Dispatcher) Backoff(attempts int) time.Duration {
	b := d.cfg.InitialBackoff
	for i := 0; i < attempts && b < d.cfg.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.cfg.MaxBackoff)
	return b/2 + d.cfg.Jitter(b-b/2)
}

// untilNext is how long Run may sleep: until the earliest retry, or, when
// something is due but every slot it needs is busy, until a send finishes
// (results wake Run; the initial backoff bounds the wait regardless).
func (d *Dispatcher) untilNext() time.Duration {
	next, ok, err := d.q.NextAttempt(d.names...)
	if err != nil {
		d.cfg.Log.WithError(err).Error("reading the alert outbox")
		return d.cfg.InitialBackoff
	}
	if !ok {
		return d.cfg.MaxBackoff
	}
	wait := next.Sub(d.cfg.Clock.Now())
	if wait <= 0 {
		return d.cfg.InitialBackoff
	}
	return min(wait, d.cfg.MaxBackoff)
}

func (d *Dispatcher) update(name string, f func(*NotifierStats)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d.stats[name])
}

func (d *Dispatcher) setInFlight(name string, n int) {
	d.update(name, func(s *NotifierStats) { s.InFlight = n })
}
