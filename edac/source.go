package edac

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// SourceName is the poller's name as an event source and metric label.
const SourceName = "edac-poll"

// Run polls every interval until ctx ends and sends the events to out. It
// takes the baseline first if nobody has polled yet. A failed poll is logged
// and retried at the next tick: a driver unloaded or a file briefly
// unreadable is not a reason to stop watching. It returns nil once ctx ends.
func (p *Poller) Run(ctx context.Context, interval time.Duration, out chan<- fault.Event) error {
	if interval <= 0 {
		return fmt.Errorf("edac poll interval %s: must be positive", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	return p.runTicks(ctx, t.C, out)
}

// runTicks is Run with the clock taken out, so tests drive it tick by tick.
func (p *Poller) runTicks(ctx context.Context, ticks <-chan time.Time, out chan<- fault.Event) error {
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if !started {
		p.pollAndLog()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
		}
		for _, ev := range p.pollAndLog() {
			select {
			case out <- ev:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func (p *Poller) pollAndLog() []fault.Event {
	evs, err := p.Poll()
	switch {
	case errors.Is(err, ErrNoEDAC):
		p.log.Debug("no EDAC memory controller registered; nothing to poll")
	case err != nil:
		p.log.WithError(err).Warn("EDAC poll incomplete")
	}
	return evs
}

// Source adapts a Poller to fault.EventSource.
type Source struct {
	poller   *Poller
	interval time.Duration
}

// NewSource returns an event source that runs p every interval.
func NewSource(p *Poller, interval time.Duration) *Source {
	return &Source{poller: p, interval: interval}
}

// Name implements fault.EventSource.
func (s *Source) Name() string { return SourceName }

// Run implements fault.EventSource.
func (s *Source) Run(ctx context.Context, out chan<- fault.Event) error {
	return s.poller.Run(ctx, s.interval, out)
}

var _ fault.EventSource = (*Source)(nil)
