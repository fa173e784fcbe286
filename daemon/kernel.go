package daemon

import (
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/pageoffline"
	"github.com/selfprotect/selfprotect/store"
)

// diagKernelIsolated is the diagnosis of a case the daemon opens only to
// record that the kernel took a page out of service on its own.
const diagKernelIsolated fault.Diagnosis = "kernel-isolated-page"

// diagOfflineByOther is the diagnosis of a case recording a CPU found
// offline at start that no record of ours explains.
const diagOfflineByOther fault.Diagnosis = "cpu-offline-by-other"

// ruleKernel names such cases' rule: the kernel's, not one of ours.
const ruleKernel = "kernel"

// kernelIsolated records a page the kernel's memory-failure handler acted
// on (ras:memory_failure_event). It runs on the action worker, in order
// with our own isolations, so a case of ours queued before it has acted
// and one queued after it sees the page taken: the page counts against the
// budgets from now on, not from the next meminfo read. kpageflags decides
// whether the page is really out of service (a "Failed" or "Ignored"
// result may leave it in use).
func (d *Daemon) kernelIsolated(ev fault.Event) {
	pfn := ev.PFN()
	r := fault.Page(pfn)
	log := d.log.WithFields(logrus.Fields{"resource": r, "kernel": ev.Detail})
	poisoned, err := pageoffline.Poisoned(d.opts.Paths, d.opts.FS, pfn)
	switch {
	case err != nil:
		log.WithError(err).Warn("kernel memory_failure: kpageflags unreadable; taking the event's word that the page is out of service")
	case !poisoned:
		log.Warn("kernel memory_failure left the page without HWPOISON: not counted as isolated")
		return
	}
	d.mu.Lock()
	ours := d.isolated.has(r) && !d.byOther[r]
	d.isolated.add(r)
	if !ours {
		d.byOther[r] = true
	}
	d.mu.Unlock()

	cases, err := d.store.Cases(store.CaseFilter{Open: true})
	if err != nil {
		log.WithError(err).Error("reading cases to annotate a kernel isolation")
	}
	now := d.now()
	act := fault.Action{Time: now, Resource: r, Kind: pageoffline.KindHard, Outcome: fault.OutcomeIsolatedByOther,
		Detail: "isolated by the kernel itself: " + ev.Detail}
	matched := false
	for _, c := range cases {
		if !names(c, r) {
			continue
		}
		matched = true
		if c.State == fault.CaseIsolated {
			// Already out of service (by us or an earlier kernel action):
			// the kernel's word is a note, not a second isolation.
			d.setCaseState(c.ID, c.State, now, "kernel: "+ev.Detail)
			continue
		}
		a := act
		a.CaseID = c.ID
		d.record(a, c)
		if dimm := dimmOf(c); dimm != "" && !ours {
			d.mu.Lock()
			d.perDIMM[dimm]++
			d.mu.Unlock()
		}
		d.setCaseState(c.ID, fault.CaseIsolated, now, "isolated by the kernel: "+ev.Detail, d.alerts.byKernel(c, ev.Detail))
	}
	if matched || ours {
		return
	}
	c := fault.Case{
		ID: fault.NewCaseID(), Opened: ev.Received, Rule: ruleKernel, Diagnosis: diagKernelIsolated,
		Suspect: r, FRU: fmt.Sprintf("memory at PFN %#x", pfn), State: fault.CaseOpen,
		Summary:  fmt.Sprintf("the kernel's memory-failure handler took page %#x out of service (%s): recorded as isolated by the kernel and counted against the page budget", pfn, ev.Detail),
		Evidence: []fault.Evidence{fault.EvidenceOf(&ev)},
	}
	d.storeCase(c)
	act.CaseID = c.ID
	d.record(act, c)
	d.setCaseState(c.ID, fault.CaseIsolated, now, "", d.alerts.byKernel(c, ev.Detail))
}

// names reports whether case c isolates (or would isolate) r.
func names(c fault.Case, r fault.Resource) bool {
	if c.Suspect == r {
		return true
	}
	for _, a := range c.Also {
		if a == r {
			return true
		}
	}
	return false
}
