package daemon

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/selfprotect/selfprotect/countonce"
	"github.com/selfprotect/selfprotect/cpuoffline"
	"github.com/selfprotect/selfprotect/fault"
)

// inspectKernel reads what the kernel itself does about errors: the RAS CEC
// (which consumes corrected DRAM errors before EDAC sees them and offlines
// pages at its own threshold) and whether soft offline is allowed at all.
func (d *Daemon) inspectKernel() {
	k := KernelStatus{CEC: "absent (no debugfs ras/cec)", SoftOffline: "enabled", EDAC: "no driver bound"}
	var m countonce.Machine
	cec := d.opts.Paths.DebugPath("ras", "cec")
	if _, err := d.opts.FS.Stat(cec); err == nil {
		thr := strings.TrimSpace(readString(d.opts.FS, d.opts.Paths.DebugPath("ras", "cec", "action_threshold")))
		m.CEC, m.CECThreshold = true, thr
		k.CEC = fmt.Sprintf("enabled (action_threshold %s): the kernel offlines a page itself after that many corrected errors; "+
			"EDAC mc_event stays silent until then, and our soft offline records it as isolated-by-other when the kernel wins", thr)
	}
	if v, err := d.opts.FS.ReadFile(d.opts.Paths.ProcPath("sys", "vm", "enable_soft_offline")); err == nil {
		if strings.TrimSpace(string(v)) == "0" {
			k.SoftOffline = "disabled by vm.enable_soft_offline=0: pages cannot be soft-offlined"
		}
	} else if !os.IsNotExist(err) {
		k.SoftOffline = "unknown: " + err.Error()
	}
	d.mu.Lock()
	edac := d.kernel.EDAC
	if edac != "" {
		k.EDAC = edac
	}
	d.kernel = k
	d.cec = m
	d.mu.Unlock()
	d.log.WithField("cec", k.CEC).WithField("soft_offline", k.SoftOffline).Info("kernel RAS state")
}

func readString(fsys interface{ ReadFile(string) ([]byte, error) }, p string) string {
	b, err := fsys.ReadFile(p)
	if err != nil {
		return "?"
	}
	return string(b)
}

// checkHealth turns everything that could leave us blind into problems
// shown by `status`: a dead source, the trace instance removed or its events
// disabled behind our back, tracing switched off, ring-buffer overruns.
func (d *Daemon) checkHealth() {
	var typed []problem
	if d.sources != nil {
		d.sources.refresh()
		d.updateArmed()
		typed = d.sources.problems()
	}
	// Every check, not only on a change: the first one after a start
	// clears what the last run announced and is over now.
	d.alerts.health(typed)
	problems := problemTexts(typed)
	d.updateBudget()
	d.mu.Lock()
	changed := strings.Join(problems, "\n") != strings.Join(d.problems, "\n")
	d.problems = problems
	d.mu.Unlock()
	d.fleet.healthChecked(d.now(), len(problems) == 0)
	if changed {
		if len(problems) == 0 {
			d.log.Info("healthy again")
		}
		for _, p := range problems {
			d.log.Error("degraded: " + p)
		}
	}
}

// updateBudget reads what the budgets count, for status: all an action of
// ours or a repair changes, so that is all they ask the main loop for
// (recheck) — not the sources' files a whole health check reads, a few
// dozen reads per isolation in a storm of decisions.
func (d *Daemon) updateBudget() {
	gen := d.actGen.Load()
	budget := d.budgetStatus()
	// An action in flight may have written the kernel and not yet
	// recorded the resource as ours: the notices wait for a check with
	// none (the action asks for one when it is done).
	settled := gen%2 == 0 && d.actGen.Load() == gen
	d.mu.Lock()
	defer d.mu.Unlock()
	// CPUs or pages another actor took offline are not a fault of ours, but
	// they use up the budgets: say so once when it changes.
	if last := d.settledBudget; settled {
		if fmt.Sprint(budget.CPUsOfflineByOther) != fmt.Sprint(last.CPUsOfflineByOther) && len(budget.CPUsOfflineByOther) > 0 {
			d.log.WithField("cpus", budget.CPUsOfflineByOther).Warn("CPUs offlined by someone else (kernel, rasdaemon, an admin); they count against the CPU budgets")
		}
		if others := budget.PagesRetired - uint64(budget.PagesRetiredByUs); budget.PagesRetired > last.PagesRetired &&
			budget.PagesRetired >= uint64(budget.PagesRetiredByUs) && others > 0 {
			d.log.WithField("pages", others).Info("pages retired by others (HardwareCorrupted); they count against the page budget")
		}
		d.settledBudget = budget
	}
	d.budget = budget
}

func (d *Daemon) budgetStatus() BudgetStatus {
	var b BudgetStatus
	// The kernel first, then our set: an isolation of ours the kernel
	// shows is then either in the set or still in flight (checkHealth).
	present, online, topoErr := cpuoffline.ReadPresentOnline(d.opts.Paths, d.opts.FS)
	mi, miErr := d.pages.MemInfo()
	ours := d.isolatedByUs()
	if topoErr == nil {
		b.CPUsPresent = len(present)
		b.CPUsOnline = len(online)
		isOnline := map[int]bool{}
		for _, n := range online {
			isOnline[n] = true
		}
		oursCPU := map[int]bool{}
		for _, iso := range ours {
			if n, err := iso.CPUNumber(); err == nil {
				oursCPU[n] = true
			}
		}
		for _, n := range present {
			if isOnline[n] {
				continue
			}
			if oursCPU[n] {
				b.CPUsOfflineByUs = append(b.CPUsOfflineByUs, n)
			} else {
				b.CPUsOfflineByOther = append(b.CPUsOfflineByOther, n)
			}
		}
	}
	if miErr == nil {
		b.PagesRetired = mi.HardwareCorruptedKB / 4
		d.policyMu.Lock()
		pct := d.cfg.Budgets.MaxRAMRetiredPercent
		d.policyMu.Unlock()
		b.PagesRetiredLimit = uint64(float64(mi.TotalKB/4) * pct / 100)
	}
	for _, r := range ours {
		if r.Kind() == fault.KindPage {
			b.PagesRetiredByUs++
		}
	}
	return b
}

// isolatedByUs reads the in-memory set, never the store: the health check
// runs on the main loop.
func (d *Daemon) isolatedByUs() []fault.Resource {
	d.mu.Lock()
	var out []fault.Resource
	for r := range d.isolated.all {
		if !d.byOther[r] {
			out = append(out, r)
		}
	}
	d.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}
