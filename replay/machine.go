package replay

import (
	"strconv"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// machine is one host as one policy left it: what is retired, offline and
// flagged. It applies decisions the way the daemon's action worker does:
// never twice on one resource, budgets checked by the policy package before
// every action, CPUs offlined with their SMT siblings.
type machine struct {
	spec HostSpec
	// retired maps a retired page to when it left service.
	retired map[uint64]time.Time
	// byPolicy counts pages this policy retired (not the kernel's UE pages);
	// own lists them.
	byPolicy uint64
	own      []uint64
	perDIMM  map[string]int
	offline  map[int]bool
	// cpuDone holds CPUs isolated by an earlier case (never act twice).
	lastCPUOff time.Time
	flagged    map[dimmID]time.Time
}

func newMachine(spec HostSpec) machine {
	return machine{spec: spec}
}

func (m *machine) retiredAt(pfn uint64) (time.Time, bool) {
	t, ok := m.retired[pfn]
	return t, ok
}

func (m *machine) retire(pfn uint64, t time.Time) {
	if m.retired == nil {
		m.retired = map[uint64]time.Time{}
	}
	m.retired[pfn] = t
}

// poisonByKernel is the memory-failure handler acting on an uncorrected
// error: the page leaves service whatever the policy says, and counts
// against the RAM budget (HardwareCorrupted counts it live).
func (m *machine) poisonByKernel(pfn uint64, t time.Time) {
	if _, done := m.retired[pfn]; !done {
		m.retire(pfn, t)
	}
}

// apply carries out one decision at t and tallies it in st.
func (m *machine) apply(cfg *policy.Config, st *PolicyReport, d policy.Decision, t time.Time) {
	c := &d.Case
	st.Cases[c.Rule]++
	switch c.Diagnosis {
	case fault.DiagReplaceDIMM:
		k, ok := dimmOfResource(c.Suspect, c.FRU)
		if !ok {
			return
		}
		if m.flagged == nil {
			m.flagged = map[dimmID]time.Time{}
		}
		if _, done := m.flagged[k]; !done {
			m.flagged[k] = t
			st.DIMMCases++
		}
	case fault.DiagSoftOfflinePage, fault.DiagOfflineRow, fault.DiagHardOfflinePage:
		dimm := dimmLabel(c)
		for _, r := range d.Targets {
			m.retirePage(cfg, st, r, dimm, t)
		}
	case fault.DiagOfflineCPU:
		for _, r := range d.Targets {
			m.offlineCPU(cfg, st, r, t)
		}
	}
}

func (m *machine) retirePage(cfg *policy.Config, st *PolicyReport, r fault.Resource, dimm string, t time.Time) {
	pfn, err := r.PFN()
	if err != nil {
		st.Failed++
		return
	}
	if _, done := m.retired[pfn]; done {
		st.AlreadyIsolated++
		return
	}
	budget := policy.Machine{TotalPages: m.spec.TotalPages(), RetiredPages: uint64(len(m.retired)), RetiredPerDIMM: m.perDIMM}
	if viol := cfg.CheckPage(budget, pfn, dimm); len(viol) > 0 {
		st.PagesRefused++
		for _, v := range viol {
			st.Refusals[v.Budget]++
		}
		return
	}
	m.retire(pfn, t)
	m.byPolicy++
	m.own = append(m.own, pfn)
	st.PagesRetired++
	if dimm != "" {
		if m.perDIMM == nil {
			m.perDIMM = map[string]int{}
		}
		m.perDIMM[dimm]++
	}
}

// offlineCPU offlines a CPU with its SMT siblings as one action, as the
// daemon does: a sibling left online keeps using the failing core's caches.
func (m *machine) offlineCPU(cfg *policy.Config, st *PolicyReport, r fault.Resource, t time.Time) {
	n, err := r.CPUNumber()
	if err != nil || n >= m.spec.CPUs {
		st.Failed++
		return
	}
	cores := m.spec.CPUs / m.spec.ThreadsPerCore
	var todo []int
	for k := 0; k < m.spec.ThreadsPerCore; k++ {
		cpu := n%cores + k*cores
		if m.offline[cpu] {
			st.AlreadyIsolated++
			continue
		}
		todo = append(todo, cpu)
	}
	if len(todo) == 0 {
		return
	}
	online := make(map[int]bool, m.spec.CPUs)
	for cpu := 0; cpu < m.spec.CPUs; cpu++ {
		online[cpu] = !m.offline[cpu]
	}
	budget := policy.Machine{PresentCPUs: m.spec.CPUs, Online: online, LastCPUOffline: m.lastCPUOff}
	if viol := cfg.CheckCPU(budget, todo, t); len(viol) > 0 {
		st.CPUsRefused += uint64(len(todo))
		for _, v := range viol {
			st.Refusals[v.Budget]++
		}
		return
	}
	if m.offline == nil {
		m.offline = map[int]bool{}
	}
	for _, cpu := range todo {
		m.offline[cpu] = true
	}
	m.lastCPUOff = t
	st.CPUsOffline += uint64(len(todo))
}

// dimmLabel names the DIMM a page case's evidence points at, as the daemon
// does for its per-DIMM budget; "" when unknown.
func dimmLabel(c *fault.Case) string {
	for _, e := range c.Evidence {
		if e.DIMM != "" {
			return e.DIMM
		}
	}
	return ""
}

// dimmOfResource parses "dimm:mcM/LABEL"; the engine puts the bare label
// in the case's FRU, which is safer than splitting a label that may hold '/'.
func dimmOfResource(r fault.Resource, label string) (dimmID, bool) {
	if r.Kind() != fault.KindDIMM {
		return dimmID{}, false
	}
	mc, _, ok := strings.Cut(strings.TrimPrefix(string(r), fault.KindDIMM+":mc"), "/")
	n, err := strconv.Atoi(mc)
	if !ok || err != nil {
		return dimmID{}, false
	}
	return dimmID{mc: n, label: label}, true
}
