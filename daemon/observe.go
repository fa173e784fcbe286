package daemon

import (
	"time"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// observe runs on the main loop for every event: count it once, store it,
// feed the engine, and hand decisions to the action worker.
func (d *Daemon) observe(ev fault.Event, storeQ chan<- fault.Event) {
	d.counters.received.Add(1)
	if d.duplicate(&ev) {
		d.counters.deferred.Add(1)
		return
	}
	d.counters.counted.Add(1)
	d.counters.errors.Add(uint64(ev.Count))
	d.metrics.count(&ev)

	// The history must never stall the pipeline: under a storm the store
	// may fall behind, and then events are counted but not kept.
	select {
	case storeQ <- ev:
	default:
		d.counters.notStored.Add(1)
	}

	d.policyMu.Lock()
	decisions := d.engine.Observe(&ev)
	storming := d.engine.Storming()
	d.policyMu.Unlock()

	if was := d.storming.Swap(storming); was != storming {
		if storming {
			d.log.Warn("corrected-error storm: per-event logging suppressed, engines keep counting")
		} else {
			d.log.Info("corrected-error storm over")
		}
	}
	if !storming {
		d.log.WithField("event", ev.String()).Debug("hardware error")
	}
	for _, dec := range decisions {
		d.openCase(dec)
	}
}

// duplicate applies "each error counted once" (design.md §2): while an EDAC
// driver is bound, memory errors come from ras:mc_event, which carries the
// DIMM label, so the same error seen in mce:mce_record is dropped; mc_event
// counts are credited to the EDAC poller so its counter deltas only add what
// no tracepoint delivered.
func (d *Daemon) duplicate(ev *fault.Event) bool {
	d.mu.Lock()
	bound, poller := d.edacBound, d.poller
	d.mu.Unlock()
	if !bound {
		return false
	}
	switch ev.Source {
	case fault.SourceTraceMCE:
		return ev.Class == fault.ClassMemory
	case fault.SourceTraceMC:
		if poller != nil && ev.MC != fault.Unknown {
			// The kernel adds uncorrected, deferred and fatal errors to the
			// ue counters and corrected ones to ce: credit the matching one.
			if ev.Severity == fault.SeverityCorrected {
				poller.Credit(ev.MC, ev.DIMMLabel, uint64(ev.Count))
			} else {
				poller.CreditUncorrected(ev.MC, ev.DIMMLabel, uint64(ev.Count))
			}
			d.counters.edacCredited.Add(uint64(ev.Count))
		}
	}
	return false
}

// openCase logs a new case and hands it on. A case with something to
// isolate goes straight to the action worker, which stores it together with
// its actions: the store's fsync must not stand between the deciding error
// and the isolation. Alert-only cases are stored here.
func (d *Daemon) openCase(dec policy.Decision) {
	c := dec.Case
	c.State = fault.CaseOpen
	d.log.WithFields(logrus.Fields{
		"case": c.ID, "diagnosis": c.Diagnosis, "suspect": c.Suspect, "fru": c.FRU, "rule": c.Rule,
	}).Warn("diagnosed: " + c.Summary)
	if len(dec.Targets) == 0 {
		d.saveCase(c)
		return
	}
	d.jobs <- job{c: c, targets: dec.Targets}
}

func (d *Daemon) saveCase(c fault.Case) {
	if err := d.store.SaveCase(c); err != nil {
		d.log.WithError(err).WithField("case", c.ID).Error("storing case failed")
	}
}

// storeEvents batches the history: one transaction per batch keeps a storm
// from costing one fsync per error.
func (d *Daemon) storeEvents(q <-chan fault.Event) {
	const maxBatch = 2000
	batch := make([]fault.Event, 0, maxBatch)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := d.store.AddEvents(batch); err != nil {
			d.log.WithError(err).Error("storing events failed")
			d.counters.notStored.Add(uint64(len(batch)))
		} else {
			d.counters.stored.Add(uint64(len(batch)))
		}
		batch = batch[:0]
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-q:
			if !ok {
				flush()
				return
			}
			batch = append(batch, ev)
			if len(batch) == maxBatch {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}
