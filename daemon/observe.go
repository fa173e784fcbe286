package daemon

import (
	"runtime"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/countonce"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// observe runs on the main loop for every record: store it, let the
// count-once stage decide what it adds, feed that to the engine, and hand
// decisions to the action worker.
func (d *Daemon) observe(ev fault.Event, storeQ chan<- fault.Event) {
	if d.sources.duplicate(&ev) {
		return // delivered by both sources of a hand-over: counted once
	}
	d.boundRebuild()
	observed := d.now()
	d.counters.received.Add(1)
	// The history keeps every record as it came, merged or not. It must
	// never stall the pipeline: under a storm the store may fall behind,
	// and then records are counted but not kept.
	select {
	case storeQ <- ev:
	default:
		d.counters.notStored.Add(1)
	}
	if ev.Source.KernelAction() {
		// The kernel's own action on a page, not an error report: the
		// action worker records it in order with our isolations.
		d.jobs.push(job{kernel: &ev})
		return
	}
	d.noteForRebuild(ev)
	d.verdicts = d.stage.AppendObserve(d.verdicts[:0], ev)
	d.feed(d.verdicts, observed)
}

// feed gives the engine what the count-once stage let through; observed
// is when the main loop took the records.
func (d *Daemon) feed(verdicts []countonce.Verdict, observed time.Time) {
	if len(verdicts) == 0 {
		return
	}
	var decisions []policy.Decision
	// received[i] is when the record behind decisions[i] was read.
	var received []time.Time
	d.policyMu.Lock()
	for i := range verdicts {
		v := &verdicts[i]
		if v.New&countonce.FacetError != 0 {
			d.counters.counted.Add(1)
			d.counters.errors.Add(uint64(v.Event.Count))
			d.metrics.count(&v.Event)
		}
		if v.New&countonce.FacetDIMM != 0 {
			d.fleet.dimm(&v.Event)
		}
		decisions = append(decisions, d.engine.ObserveParts(&v.Event, parts(v.New))...)
		for len(received) < len(decisions) {
			received = append(received, v.Event.Received)
		}
	}
	storming := d.engine.Storming()
	d.policyMu.Unlock()

	if was := d.storming.Swap(storming); was != storming {
		if storming {
			d.log.Warn("corrected-error storm: per-event logging suppressed, engines keep counting")
		} else {
			d.log.Info("corrected-error storm over")
		}
	}
	for i, dec := range decisions {
		d.openCase(dec, newDecisionTiming(received[i], observed, d.now()))
	}
	if len(decisions) > 0 {
		// The action worker first: on a daemon with one CPU (pinned, or a
		// busy host) it would otherwise wait for the logging below.
		runtime.Gosched()
	}
	if !storming && d.log.IsLevelEnabled(logrus.DebugLevel) {
		for i := range verdicts {
			d.log.WithField("event", verdicts[i].Event.String()).WithField("new", verdicts[i].New.String()).Debug("hardware error")
		}
	}
}

func parts(f countonce.Facet) policy.Parts {
	return policy.Parts{
		Error: f&countonce.FacetError != 0,
		Page:  f&countonce.FacetPage != 0,
		DIMM:  f&countonce.FacetDIMM != 0,
		Row:   f&countonce.FacetRow != 0,
	}
}

// openCase hands a new case to the action worker, which makes it durable
// (with its intended actions, before any kernel write): the main loop
// itself never waits on the store. A case with something to isolate is
// logged by the worker after the kernel write, not on the way to it.
func (d *Daemon) openCase(dec policy.Decision, timing *decisionTiming) {
	c := dec.Case
	c.State = fault.CaseOpen
	if rb := d.rebuilding; rb != nil {
		rb.opened[caseKey(c.Diagnosis, c.Suspect)] = true
	}
	if len(dec.Targets) == 0 {
		d.logDiagnosed(c)
		d.jobs.push(job{fn: func() { d.storeCase(c) }})
		return
	}
	d.jobs.push(job{c: c, targets: dec.Targets, timing: timing, announce: true})
}

func (d *Daemon) logDiagnosed(c fault.Case) {
	d.log.WithFields(logrus.Fields{
		"case": c.ID, "diagnosis": c.Diagnosis, "suspect": c.Suspect, "fru": c.FRU, "rule": c.Rule,
	}).Warn("diagnosed: " + c.Summary)
}

// storeEvents batches the history: one transaction per batch keeps a storm
// from costing one fsync per error.
func (d *Daemon) storeEvents(q <-chan fault.Event) {
	defer close(d.storeDone)
	const maxBatch = 2000
	const maxHeldEvents = 100_000
	batch := make([]fault.Event, 0, maxBatch)
	stored := func(n int) {
		if d.writes.eventsFailing.Swap(false) {
			d.log.WithField("events", n).Warn("the store takes events again")
		}
		d.counters.stored.Add(uint64(n))
	}
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := d.store.AddEvents(batch); err != nil {
			if !d.writes.eventsFailing.Swap(true) {
				d.log.WithError(err).Error("storing events failed; they are kept in memory and retried")
			}
			d.writes.failures.Add(1)
			// Kept for the next tick, up to a bound: a store down for
			// long under a storm must not eat the memory.
			if len(batch) > maxHeldEvents {
				drop := len(batch) - maxHeldEvents
				d.counters.notStored.Add(uint64(drop))
				batch = append(batch[:0], batch[drop:]...)
			}
			return
		}
		stored(len(batch))
		batch = batch[:0]
	}
	// since is when the oldest event of batch arrived.
	var since time.Time
	add := func(ev fault.Event) {
		if len(batch) == 0 {
			since = d.now()
		}
		batch = append(batch, ev)
	}
	// take moves what q holds into batch, writing full batches on the way.
	// What the main loop sent before it asked for a flush or a sync is in
	// q's buffer: taking it first keeps the order the caller saw.
	take := func() bool {
		for {
			select {
			case ev, ok := <-q:
				if !ok {
					return false
				}
				add(ev)
				if len(batch) == maxBatch {
					flush()
				}
			default:
				return true
			}
		}
	}
	// The flush timer runs only while a batch waits (new, or kept after a
	// failed write) and no storm's busy tick writes it: an idle daemon
	// does not wake up for it.
	var due <-chan time.Time
	for {
		if due == nil && len(batch) > 0 {
			if wait := d.historyFlush(); wait > 0 {
				due = time.After(wait)
			}
		}
		select {
		case ev, ok := <-q:
			if !ok {
				flush()
				return
			}
			add(ev)
			if len(batch) >= maxBatch && !d.writes.eventsFailing.Load() {
				flush()
			}
		case <-due:
			due = nil
			flush()
		case <-d.flushQ:
			open := take()
			due = nil
			if !d.storming.Load() || d.now().Sub(since) >= historyFlushStorm {
				flush()
			}
			if !open {
				flush()
				return
			}
		case req := <-d.syncQ:
			take()
			if req.write(batch) {
				stored(len(batch))
				batch = batch[:0]
			}
			close(req.done)
		}
	}
}
