package sim

import (
	"errors"
	"fmt"
	"slices"
)

// emitter writes records of one injection into every instance that records
// them, then flushes each touched per-CPU page: an injection's records are
// readable as soon as the injection returns.
type emitter struct {
	m       *Machine
	touched map[*cpuBuffer]bool
	// wants caches, per injection, which instances record an event, so a
	// storm reads each enable file once.
	wants map[string][]*instance
	// edac collects counter bumps, written once at flush.
	edac         map[edacKey]uint64
	cecThreshold uint64
}

type edacKey struct {
	mc, dimm, cs int
	kind         string // "ce" or "ue"
}

func (m *Machine) newEmitter() *emitter {
	return &emitter{m: m, touched: map[*cpuBuffer]bool{}, wants: map[string][]*instance{}, edac: map[edacKey]uint64{}}
}

func (e *emitter) recorders(event string) []*instance {
	if ins, ok := e.wants[event]; ok {
		return ins
	}
	ev := e.m.events[event]
	names := make([]string, 0, len(e.m.instances))
	for n := range e.m.instances {
		names = append(names, n)
	}
	slices.Sort(names)
	var ins []*instance
	for _, n := range names {
		if in := e.m.instances[n]; in.records(ev.system, ev.name) {
			ins = append(ins, in)
		}
	}
	e.wants[event] = ins
	return ins
}

// record adds one record, written at ts, to CPU cpu's buffer of every
// instance recording event.
func (e *emitter) record(event string, cpu int, ts uint64, data []byte) error {
	ins := e.recorders(event)
	if len(ins) == 0 {
		e.m.stats.LostToDisabledTracing++
		return nil
	}
	for _, in := range ins {
		cb := in.cpus[cpu]
		if cb.oldestTS == 0 {
			cb.oldestTS = ts
		}
		err := cb.enc.add(ts, data)
		if errors.Is(err, errPageFull) {
			if err := e.writePage(cb); err != nil {
				return err
			}
			err = cb.enc.add(ts, data)
		}
		if err != nil {
			return fmt.Errorf("encoding %s: %w", event, err)
		}
		e.touched[cb] = true
	}
	return nil
}

func (e *emitter) writePage(cb *cpuBuffer) error {
	records, used := cb.enc.records, cb.enc.used
	err := cb.writePage(cb.enc.finish(), records, used)
	switch {
	case errors.Is(err, errOverrun):
		e.m.stats.Overrun += uint64(records)
		return nil
	case err != nil:
		return err
	}
	e.m.stats.Pages++
	e.m.stats.Records += uint64(records)
	return nil
}

// flush writes every partly filled page and refreshes the stats files.
func (e *emitter) flush() error {
	var first error
	for k, n := range e.edac {
		if err := e.m.bumpEDAC(k.mc, k.dimm, k.cs, k.kind, n); err != nil && first == nil {
			first = err
		}
	}
	clear(e.edac)
	for cb := range e.touched {
		if !cb.enc.empty() {
			if err := e.writePage(cb); err != nil && first == nil {
				first = err
			}
		}
		if cb.dirty {
			if err := cb.writeStats(e.m.lastTS); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}
