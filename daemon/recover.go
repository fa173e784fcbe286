package daemon

import (
	"errors"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/cpuoffline"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/pageoffline"
	"github.com/selfprotect/selfprotect/store"
)

// recoverState runs at start, after the sources are armed and before the
// main loop takes their events: it settles the store with the kernel (a
// crash may have come at any instant) and rebuilds the rate engines, then
// queues what must be done again under today's policy.
func (d *Daemon) recoverState() {
	// First: a journaled decision the store lacks is a case the rebuilt
	// engines must find, or they would decide it again.
	d.importJournal()
	replay := d.loadHistory()
	d.reconcileIntents()
	d.rebuildEngine(d.stage)
	d.recordPoisonedByOthers()
	d.recordOfflineByOthers()
	d.queueReplay(replay)
}

// kernelIsolates reads whether r is out of service now: a page with
// HWPOISON, a CPU not online. An error says the kernel could not be asked.
func (d *Daemon) kernelIsolates(r fault.Resource) (bool, error) {
	switch r.Kind() {
	case fault.KindPage:
		pfn, err := r.PFN()
		if err != nil {
			return false, err
		}
		return pageoffline.Poisoned(d.opts.Paths, d.opts.FS, pfn)
	case fault.KindCPU:
		n, err := r.CPUNumber()
		if err != nil {
			return false, err
		}
		topo, err := cpuoffline.ReadTopology(d.opts.Paths, d.opts.FS)
		if err != nil {
			return false, err
		}
		return !topo.IsOnline(n), nil
	}
	return false, fmt.Errorf("%s: not a page or a CPU", r)
}

// loadHistory restores what budgets and "never act twice" need from the
// store. Only what the kernel still holds out of service counts as
// isolated: what we isolated before a reboot is back in service and is
// returned for re-isolation.
func (d *Daemon) loadHistory() []store.Isolation {
	iso, err := d.store.Isolated()
	if err != nil {
		d.log.WithError(err).Error("reading isolation history")
		return nil
	}
	var replay []store.Isolation
	for _, i := range iso {
		if i.Resource.Kind() == fault.KindCPU && i.ByUs {
			// Back in service or not, our last offline paces the next
			// one: a reboot does not reset the interval.
			d.mu.Lock()
			if i.At.After(d.lastCPUOff) {
				d.lastCPUOff = i.At
			}
			d.mu.Unlock()
		}
		out, err := d.kernelIsolates(i.Resource)
		switch {
		case err != nil || out:
		case i.ByUs:
			replay = append(replay, i)
			continue
		default:
			// Another actor's isolation a reboot undid is not ours to
			// restore, and no longer out of service: our own rules may
			// act on it again.
			continue
		}
		d.mu.Lock()
		d.isolated.add(i.Resource)
		if !i.ByUs {
			d.byOther[i.Resource] = true
		}
		d.mu.Unlock()
		if i.Resource.Kind() == fault.KindPage && i.ByUs {
			if c, err := d.store.Case(i.CaseID); err == nil {
				if dimm := dimmOf(c); dimm != "" {
					d.mu.Lock()
					d.perDIMM[dimm]++
					d.mu.Unlock()
				}
			}
		}
	}
	if len(iso) > 0 {
		d.log.WithField("resources", len(iso)).WithField("back_in_service", len(replay)).Info("isolation history loaded")
	}
	return replay
}

// reconcileIntents settles every decision whose outcome the last run did
// not record: what the kernel shows isolated is recorded so, the rest is
// carried out now (within today's budgets).
func (d *Daemon) reconcileIntents() {
	un, err := d.store.Unsettled()
	if err != nil {
		d.log.WithError(err).Error("reading unsettled decisions; they are not carried out")
		return
	}
	var order []string
	byCase := map[string][]fault.Action{}
	for _, a := range un {
		if _, ok := byCase[a.CaseID]; !ok {
			order = append(order, a.CaseID)
		}
		byCase[a.CaseID] = append(byCase[a.CaseID], a)
	}
	for _, id := range order {
		c, err := d.store.Case(id)
		if err != nil {
			d.log.WithError(err).WithField("case", id).Error("reading an unsettled case")
			continue
		}
		var redo []fault.Resource
		for _, a := range byCase[id] {
			out, err := d.kernelIsolates(a.Resource)
			switch {
			case err != nil:
				d.record(fault.Action{CaseID: id, Time: d.now(), Resource: a.Resource, Kind: a.Kind, Outcome: fault.OutcomeFailed,
					Detail: fmt.Sprintf("the daemon stopped before recording this outcome, and the kernel cannot tell it now: %v", err)}, c)
			case out && a.Outcome == fault.OutcomeIntended:
				d.markIsolated(a.Resource, false)
				d.record(fault.Action{CaseID: id, Time: d.now(), Resource: a.Resource, Kind: a.Kind, Outcome: fault.OutcomeIsolated,
					Detail: "found isolated at start: the kernel write made before the daemon stopped took effect"}, c)
			case out:
				// Paused: we never wrote; someone else took it.
				d.markIsolated(a.Resource, true)
				d.record(fault.Action{CaseID: id, Time: d.now(), Resource: a.Resource, Kind: a.Kind, Outcome: fault.OutcomeIsolatedByOther,
					Detail: "found isolated at start, while our isolation was paused: another actor took it"}, c)
			default:
				redo = append(redo, a.Resource)
			}
		}
		d.log.WithFields(logrus.Fields{"case": id, "redo": len(redo)}).Warn("settling a decision the last run did not finish")
		if len(redo) > 0 {
			d.jobs.push(job{c: c, targets: redo, replay: true, saved: true})
		} else {
			d.setCaseState(id, fault.CaseIsolated, d.now(), "settled at start against the kernel")
		}
	}
}

func (d *Daemon) markIsolated(r fault.Resource, byOther bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.isolated.add(r)
	if byOther {
		d.byOther[r] = true
	}
}

// recordPoisonedByOthers gives every poisoned page the store knows nothing
// of a case: HardwareCorrupted above what we know means another actor
// (the kernel's CEC or memory-failure handler, rasdaemon, an admin) or a
// history lost with a corrupt store. The scan of kpageflags runs only then.
func (d *Daemon) recordPoisonedByOthers() {
	mi, err := d.pages.MemInfo()
	if err != nil {
		return
	}
	d.mu.Lock()
	known := d.isolated.pages
	d.mu.Unlock()
	if mi.HardwareCorruptedKB/4 <= known {
		return
	}
	pfns, err := d.scanPoisoned()
	if err != nil {
		d.log.WithError(err).Error("scanning kpageflags for pages poisoned by others")
	}
	for _, pfn := range pfns {
		d.recordFoundIsolated(fault.Page(pfn), diagKernelIsolated, fmt.Sprintf("memory at PFN %#x", pfn),
			fmt.Sprintf("page %#x found poisoned at start with no record of ours: isolated by another actor "+
				"(the kernel, rasdaemon, an admin) or in a run whose history was lost; counted against the page budget", pfn),
			"HWPOISON found in kpageflags at start")
	}
}

// recordFoundIsolated gives a resource found isolated at start, which no
// record of ours explains, an isolated-by-other case (once: the next start
// knows it).
func (d *Daemon) recordFoundIsolated(r fault.Resource, diagnosis fault.Diagnosis, fru, summary, detail string) {
	d.mu.Lock()
	seen := d.isolated.has(r)
	d.mu.Unlock()
	if seen {
		return
	}
	d.markIsolated(r, true)
	now := d.now()
	c := fault.Case{
		ID: fault.NewCaseID(), Opened: now, Rule: ruleKernel, Diagnosis: diagnosis,
		Suspect: r, FRU: fru, State: fault.CaseOpen, Summary: summary,
	}
	d.storeCase(c)
	d.record(fault.Action{CaseID: c.ID, Time: now, Resource: r, Kind: "none", Outcome: fault.OutcomeIsolatedByOther,
		Detail: detail}, c)
	d.setCaseState(c.ID, fault.CaseIsolated, now, "")
}

// recordOfflineByOthers gives every CPU found offline at start that the
// store knows nothing of a case, as recordPoisonedByOthers does for pages:
// an admin, another tool, or a run whose history was lost took it out of
// service. It counts against the CPU budgets either way (they read the
// kernel); the case says why the CPU is offline and keeps the daemon from
// calling it ours.
func (d *Daemon) recordOfflineByOthers() {
	topo, err := cpuoffline.ReadTopology(d.opts.Paths, d.opts.FS)
	if err != nil {
		d.log.WithError(err).Error("reading the CPU topology for CPUs offlined by others")
		return
	}
	online := map[int]bool{}
	for _, n := range topo.Online {
		online[n] = true
	}
	for _, n := range topo.Present {
		if online[n] || topo.NoOnlineFile[n] {
			continue
		}
		d.recordFoundIsolated(fault.CPU(n), diagOfflineByOther, fmt.Sprintf("cpu %d", n),
			fmt.Sprintf("CPU %d found offline at start with no record of ours: offlined by another actor "+
				"(an admin, another tool) or in a run whose history was lost; counted against the CPU budgets", n),
			"offline at start")
	}
}

// scanPoisoned lists the PFNs kpageflags marks HWPOISON.
func (d *Daemon) scanPoisoned() ([]uint64, error) {
	path := d.opts.Paths.ProcPath("kpageflags")
	buf := make([]byte, 8*8192)
	var out []uint64
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := d.opts.FS.ReadAt(path, buf, off)
		for i := 0; i+8 <= n; i += 8 {
			f, perr := pageoffline.ParsePageFlags(buf[i : i+8])
			if perr == nil && f.HWPoison() {
				out = append(out, uint64(off/8)+uint64(i/8))
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && n < len(buf)) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("reading %s: %w", path, err)
		}
	}
}

// queueReplay re-isolates what we isolated before a reboot, as a new
// decision under today's policy: deny-lists, budgets on the machine as it
// is now and the mode apply, and a refusal is recorded.
func (d *Daemon) queueReplay(iso []store.Isolation) {
	for _, i := range iso {
		c, err := d.store.Case(i.CaseID)
		if err != nil {
			d.log.WithError(err).WithField("resource", i.Resource).Error("reading the case of an isolation to restore")
			continue
		}
		d.log.WithField("resource", i.Resource).WithField("case", c.ID).Warn("back in service after a reboot: isolating again under today's policy")
		d.jobs.push(job{c: c, targets: []fault.Resource{i.Resource}, replay: true, reboot: true})
	}
}
