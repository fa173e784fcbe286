package daemon

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/cpuoffline"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/pageoffline"
	"github.com/selfprotect/selfprotect/policy"
)

// job is one piece of work for the action worker.
type job struct {
	c       fault.Case
	targets []fault.Resource
	// replay marks an isolation of a case already in the store: a
	// re-isolation after a reboot, or an intent left unsettled by a crash.
	// It is a new decision all the same: today's deny-lists, budgets and
	// mode apply.
	replay bool
	// reboot marks a replay that restores an isolation a reboot undid
	// (not an intent a crash left unsettled): the offline that took the
	// CPU out before the reboot does not count against restoring it.
	reboot bool
	// saved is set once the case and its intents are durable: in the
	// store, or in the journal with journaled holding the intents the
	// store still has to take after the kernel write.
	saved     bool
	journaled []fault.Action
	// announce: the case is new and not logged yet; the worker logs it
	// after the kernel write (afterWrite).
	announce bool
	// kernel, when set, is a ras:memory_failure_event to record: the
	// kernel isolated a page itself. It is never held while paused.
	kernel *fault.Event
	// fn, when set, is store work the main loop hands over so that it
	// never waits on the disk itself.
	fn func()
	// timing stamps a live decision's way to the kernel (nil otherwise).
	timing *decisionTiming
}

// actTimeout bounds one job once begun: a stop (SIGTERM) lets the job in
// flight finish rather than cancel it half-way, since a cancelled verify
// would record a page the kernel did poison as failed.
const actTimeout = 30 * time.Second

// actLoop runs actions one at a time: two isolations racing for the same
// budget could both pass the check and together break it. Held store
// writes are retried from here too.
func (d *Daemon) actLoop(ctx context.Context) {
	// Writes are held only by the worker's own jobs or before it starts
	// (recovery), and restores are held back only by the worker or by
	// recovery before it starts, so the retry ticker runs only while
	// either is held.
	retry := newOnDemand(writeRetry)
	defer retry.stop()
	for {
		retry.set(d.writes.heldN.Load() > 0 || d.holdsRestores())
		select {
		case <-ctx.Done():
			d.drainJobs()
			return
		case <-retry.C():
			d.retryWrites()
			d.retryDeferred()
		case <-d.jobs.ready:
			for ctx.Err() == nil {
				// Acting before the pop: Pending (queue + acting) never
				// reads 0 while a job moves from the queue to the worker.
				d.acting.Store(1)
				j, ok := d.jobs.pop()
				if !ok {
					d.acting.Store(0)
					break
				}
				d.actGen.Add(1)
				d.run(ctx, j)
				d.actGen.Add(1)
				d.acting.Store(0)
				if j.fn == nil {
					d.askBudget()
				}
			}
		}
	}
}

// askBudget has the main loop read the budgets soon: an isolation (or a
// repair) changed what they count, and status should say so before the
// next periodic health check.
func (d *Daemon) askBudget() {
	select {
	case d.recheck <- struct{}{}:
	default:
	}
}

func (d *Daemon) run(ctx context.Context, j job) {
	switch {
	case j.fn != nil:
		j.fn()
		return
	case j.kernel != nil:
		d.kernelIsolated(*j.kernel)
		return
	}
	j.timing.mark(stepPicked, d.now())
	d.writeAhead(&j)
	if d.paused.Load() && !j.replay {
		d.afterWrite(&j)
		d.mu.Lock()
		d.pending = append(d.pending, j)
		d.mu.Unlock()
		d.record(fault.Action{CaseID: j.c.ID, Time: d.now(), Resource: j.c.Suspect, Kind: "none",
			Outcome: fault.OutcomePaused, Detail: "isolation paused by operator; will act on resume"}, j.c)
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), actTimeout)
	defer cancel()
	d.execute(actx, j)
}

// writeAhead makes the decision durable before the kernel is touched: the
// case with one intended action per target. A live decision goes to the
// journal, one fdatasync'd append, and into the store after the write
// (afterWrite), with the events that fed it; when the journal cannot
// take it, and for a replay (a case the store already has), it goes into
// the store now.
func (d *Daemon) writeAhead(j *job) {
	if j.saved {
		return
	}
	intents := make([]fault.Action, 0, len(j.targets))
	for _, r := range j.targets {
		intents = append(intents, fault.Action{CaseID: j.c.ID, Time: d.now(), Resource: r, Kind: actionKind(j.c.Diagnosis),
			Outcome: fault.OutcomeIntended, Detail: "decided; the kernel write follows"})
	}
	switch {
	case j.replay:
		d.storeIntent(j.c, intents)
	case d.journalDecision(j.c, intents):
		j.journaled = intents
	default:
		d.storeDecision(j.c, intents)
	}
	j.saved = true
	j.timing.mark(stepIntended, d.now())
}

// afterWrite does what the way to the kernel write leaves for after it,
// before the outcome is recorded: logs the new case, and puts a journaled
// decision into the store (its outcome names the case).
func (d *Daemon) afterWrite(j *job) {
	if j.announce {
		d.logDiagnosed(j.c)
		j.announce = false
	}
	if j.journaled == nil {
		return
	}
	d.storeDecision(j.c, j.journaled)
	j.journaled = nil
	d.trimJournal()
	j.timing.mark(stepStored, d.now())
}

func actionKind(diag fault.Diagnosis) string {
	switch diag {
	case fault.DiagOfflineCPU:
		return cpuoffline.Kind
	case fault.DiagHardOfflinePage:
		return pageoffline.KindHard
	}
	return pageoffline.KindSoft
}

// drainJobs hands back what the daemon stops before doing: decisions are
// stored with their intents, which the next start settles against the
// kernel and carries out.
func (d *Daemon) drainJobs() {
	for {
		j, ok := d.jobs.pop()
		if !ok {
			return
		}
		switch {
		case j.fn != nil:
			j.fn()
		case j.kernel != nil:
			d.kernelIsolated(*j.kernel)
		default:
			d.writeAhead(&j)
			d.afterWrite(&j)
			d.log.WithField("case", j.c.ID).Warn("stopping before acting on this case; the next start carries it out")
		}
	}
}

func (d *Daemon) resumePending() {
	d.mu.Lock()
	p := d.pending
	d.pending = nil
	d.mu.Unlock()
	for _, j := range p {
		d.jobs.push(j)
	}
}

// execute isolates every target of one case and settles the case's state.
func (d *Daemon) execute(ctx context.Context, j job) {
	switch j.c.Diagnosis {
	case fault.DiagOfflineCPU:
		d.executeCPU(ctx, j)
	case fault.DiagSoftOfflinePage, fault.DiagOfflineRow, fault.DiagHardOfflinePage:
		d.executePages(ctx, j)
	default:
		d.afterWrite(&j)
		d.log.WithField("diagnosis", j.c.Diagnosis).Error("no actuator for diagnosis")
	}
}

func (d *Daemon) executeCPU(ctx context.Context, j job) {
	topo, err := cpuoffline.ReadTopology(d.opts.Paths, d.opts.FS)
	if err != nil {
		d.settle(j, []fault.Action{{CaseID: j.c.ID, Time: d.now(), Resource: j.c.Suspect, Kind: cpuoffline.Kind,
			Outcome: fault.OutcomeFailed, Detail: fmt.Sprintf("reading CPU topology: %v", err)}})
		return
	}
	// A core is offlined with its SMT siblings: a sibling left online keeps
	// using the failing core's caches.
	var cpus []int
	for _, r := range j.targets {
		n, err := r.CPUNumber()
		if err != nil {
			continue
		}
		sib := topo.Siblings[n]
		if len(sib) == 0 {
			sib = []int{n}
		}
		cpus = append(cpus, sib...)
	}
	cpus = uniqueInts(cpus)
	var actions []fault.Action
	var todo []int
	for _, n := range cpus {
		r := fault.CPU(n)
		if done, a := d.alreadyActed(j, r, cpuoffline.Kind); done {
			actions = append(actions, a)
			continue
		}
		todo = append(todo, n)
	}
	if len(todo) > 0 {
		m := d.cpuBudget(topo)
		if j.reboot {
			// A reboot put every CPU back: restoring one is a loss of
			// capacity now, paced like any other by the offlines of this
			// run (other restores included), not by those before the
			// reboot, among which is this CPU's own.
			d.mu.Lock()
			m.LastCPUOffline = d.lastCPUOffRun
			d.mu.Unlock()
		}
		d.policyMu.Lock()
		viol := d.cfg.CheckCPU(m, todo, d.now())
		interval := d.cfg.Budgets.CPUOfflineInterval
		d.policyMu.Unlock()
		if len(viol) > 0 {
			detail := ""
			if j.reboot && onlyInterval(viol) {
				due := m.LastCPUOffline.Add(interval)
				d.deferReplay(j, due)
				detail = "; restored when the interval allows, at " + trimTime(due)
			}
			for _, n := range todo {
				a := refusal(j.c.ID, d.now(), fault.CPU(n), cpuoffline.Kind, viol)
				a.Detail += detail
				actions = append(actions, a)
			}
			todo = nil
		}
	}
	j.timing.mark(stepChecked, d.now())
	for _, n := range todo {
		a := d.cpus.Isolate(ctx, fault.CPU(n), d.dryRun())
		a.CaseID = j.c.ID
		if a.Time.IsZero() {
			a.Time = d.now()
		}
		if a.Outcome == fault.OutcomeIsolated {
			d.mu.Lock()
			d.lastCPUOff, d.lastCPUOffRun = a.Time, a.Time
			d.mu.Unlock()
		}
		actions = append(actions, a)
	}
	j.timing.mark(stepIsolated, d.now())
	d.settle(j, actions)
}

func (d *Daemon) executePages(ctx context.Context, j job) {
	var actions []fault.Action
	dimm := dimmOf(j.c)
	for _, r := range j.targets {
		kind := pageoffline.KindSoft
		if j.c.Diagnosis == fault.DiagHardOfflinePage {
			kind = pageoffline.KindHard
		}
		if done, a := d.alreadyActed(j, r, kind); done {
			actions = append(actions, a)
			continue
		}
		pfn, err := r.PFN()
		if err != nil {
			actions = append(actions, fault.Action{CaseID: j.c.ID, Time: d.now(), Resource: r, Kind: kind,
				Outcome: fault.OutcomeFailed, Detail: err.Error()})
			continue
		}
		m, mi := d.memoryBudgetRead()
		d.policyMu.Lock()
		viol := d.cfg.CheckPage(m, pfn, dimm)
		d.policyMu.Unlock()
		if len(viol) > 0 {
			actions = append(actions, refusal(j.c.ID, d.now(), r, kind, viol))
			continue
		}
		j.timing.mark(stepChecked, d.now())
		var a fault.Action
		if kind == pageoffline.KindHard {
			a = d.pages.HardOfflineAfter(ctx, r, d.dryRun(), mi)
		} else {
			a = d.pages.IsolateAfter(ctx, r, d.dryRun(), mi)
		}
		a.CaseID = j.c.ID
		if a.Time.IsZero() {
			a.Time = d.now()
		}
		if a.Outcome == fault.OutcomeIsolated && dimm != "" {
			d.mu.Lock()
			d.perDIMM[dimm]++
			d.mu.Unlock()
		}
		actions = append(actions, a)
	}
	j.timing.mark(stepIsolated, d.now())
	d.settle(j, actions)
}

// alreadyActed enforces "never act twice on one resource": a resource we
// (or another actor, as far as we saw) already isolated is not touched
// again. The set lives in memory, loaded at start from the store and
// checked against the kernel (a reboot returns resources to service), so
// the check costs no query between the deciding error and the action.
func (d *Daemon) alreadyActed(j job, r fault.Resource, kind string) (bool, fault.Action) {
	d.mu.Lock()
	acted, other := d.isolated.has(r), d.byOther[r]
	d.mu.Unlock()
	if !acted {
		return false, fault.Action{}
	}
	if other {
		return true, fault.Action{CaseID: j.c.ID, Time: d.now(), Resource: r, Kind: kind,
			Outcome: fault.OutcomeIsolatedByOther, Detail: "already isolated by another actor (the kernel's memory-failure handler or CEC, an admin)"}
	}
	return true, fault.Action{CaseID: j.c.ID, Time: d.now(), Resource: r, Kind: kind,
		Outcome: fault.OutcomeAlreadyIsolated, Detail: "an earlier case already isolated this resource"}
}

// onlyInterval tells a refusal that waiting cures from one it does not.
func onlyInterval(viol []policy.Violation) bool {
	for _, v := range viol {
		if v.Budget != "cpu_offline_interval" {
			return false
		}
	}
	return len(viol) > 0
}

// deferredJob is a job held until due.
type deferredJob struct {
	j   job
	due time.Time
}

// deferReplay holds a restore the CPU interval refused until due. Held
// restores live in memory only: a restart before then replays the
// isolation again from the store.
func (d *Daemon) deferReplay(j job, due time.Time) {
	// A fresh intent precedes the later write, as for any decision.
	j.saved = false
	d.mu.Lock()
	d.deferred = append(d.deferred, deferredJob{j: j, due: due})
	d.mu.Unlock()
}

// holdsRestores says whether a restore waits for the CPU interval.
func (d *Daemon) holdsRestores() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.deferred) > 0
}

// retryDeferred queues the held restores that are due (action worker).
func (d *Daemon) retryDeferred() {
	now := d.now()
	d.mu.Lock()
	var due []job
	keep := d.deferred[:0]
	for _, dj := range d.deferred {
		if now.Before(dj.due) {
			keep = append(keep, dj)
			continue
		}
		due = append(due, dj.j)
	}
	d.deferred = keep
	d.mu.Unlock()
	for _, j := range due {
		d.jobs.push(j)
	}
}

func refusal(caseID string, now time.Time, r fault.Resource, kind string, viol []policy.Violation) fault.Action {
	names := make([]string, 0, len(viol))
	details := make([]string, 0, len(viol))
	for _, v := range viol {
		names = append(names, v.Budget)
		details = append(details, v.Detail)
	}
	return fault.Action{CaseID: caseID, Time: now, Resource: r, Kind: kind, Outcome: fault.OutcomeRefused,
		Violations: names, Detail: "refused: " + strings.Join(details, "; ")}
}

// settle records the outcome of each intent and moves the case to
// isolated or failed.
func (d *Daemon) settle(j job, actions []fault.Action) {
	d.afterWrite(&j)
	c := j.c
	state := fault.CaseIsolated
	for _, a := range actions {
		switch a.Outcome {
		case fault.OutcomeIsolated, fault.OutcomeIsolatedByOther, fault.OutcomeAlreadyIsolated:
			d.mu.Lock()
			d.isolated.add(a.Resource)
			if a.Outcome == fault.OutcomeIsolatedByOther {
				d.byOther[a.Resource] = true
			}
			d.mu.Unlock()
		case fault.OutcomeDryRun:
			state = fault.CaseOpen
		default:
			state = fault.CaseFailed
		}
	}
	if state == fault.CaseOpen {
		for _, a := range actions {
			d.record(a, c)
		}
		j.timing.log(d.log, c, d.now())
		d.alerts.raise(d.alerts.wouldIsolate(j, actions)...)
		return
	}
	d.storeOutcome(c.ID, actions, state, d.now(), d.settledAlerts(j, actions, state)...)
	j.timing.log(d.log, c, d.now())
}

// record stores one action's outcome: the other transition point, next
// to storeCase, storeIntent and setCaseState.
func (d *Daemon) record(a fault.Action, c fault.Case) {
	d.persist(fmt.Sprintf("storing the %s action on %s of case %s", a.Outcome, a.Resource, a.CaseID),
		func() error { return d.store.AddAction(a) })
	d.noteAction(a)
}

// noteAction counts and logs an action stored (or held) by the caller.
func (d *Daemon) noteAction(a fault.Action) {
	d.mu.Lock()
	d.outcomes[string(a.Outcome)]++
	d.mu.Unlock()
	d.fleet.action(a.Kind, a.Outcome)
	entry := d.log.WithFields(logrus.Fields{"case": a.CaseID, "resource": a.Resource, "action": a.Kind,
		"outcome": a.Outcome, "attempts": a.Attempts})
	if len(a.Violations) > 0 {
		entry = entry.WithField("violations", strings.Join(a.Violations, ","))
	}
	if a.Undo != "" {
		entry = entry.WithField("undo", a.Undo)
	}
	switch a.Outcome {
	case fault.OutcomeIsolated, fault.OutcomeIsolatedByOther, fault.OutcomeDryRun, fault.OutcomeAlreadyIsolated:
		entry.Warn(a.Detail)
	default:
		entry.Error(a.Detail)
	}
}

// cpuBudget is the snapshot CPU budgets need: what the kernel says now
// (CPUs offlined by others count, since they are simply not online) plus
// when we last offlined one.
func (d *Daemon) cpuBudget(topo cpuoffline.Topology) policy.Machine {
	m := policy.Machine{
		PresentCPUs:  len(topo.Present),
		Online:       map[int]bool{},
		NoOnlineFile: topo.NoOnlineFile,
		Isolated:     map[int]bool{},
	}
	for _, n := range topo.Online {
		m.Online[n] = true
	}
	for _, n := range topo.Isolated {
		m.Isolated[n] = true
	}
	d.mu.Lock()
	m.LastCPUOffline = d.lastCPUOff
	d.mu.Unlock()
	return m
}

// memoryBudget is the snapshot page budgets need. HardwareCorrupted counts
// every poisoned page, whoever retired it. When meminfo cannot be read the
// RAM size is unknown and the policy refuses: better no offline than one
// past the budget.
func (d *Daemon) memoryBudget() policy.Machine {
	m, _ := d.memoryBudgetRead()
	return m
}

// memoryBudgetRead is memoryBudget with the meminfo reading behind it,
// which the page offline reuses as its "before" rather than read again on
// the way to the kernel write. It stays a read, not a figure kept in
// memory: other actors (CEC, an admin) poison pages without telling us.
func (d *Daemon) memoryBudgetRead() (policy.Machine, pageoffline.MemInfoRead) {
	m := policy.Machine{RetiredPerDIMM: map[string]int{}}
	mi, err := d.pages.MemInfo()
	if err == nil {
		m.TotalPages = mi.TotalKB / 4
		m.RetiredPages = mi.HardwareCorruptedKB / 4
	} else {
		d.log.WithError(err).Error("reading meminfo for the page budget")
	}
	d.mu.Lock()
	// Pages we know are out of service (ours, and the kernel's from
	// memory_failure_event) count at once, even before meminfo shows them.
	m.RetiredPages = max(m.RetiredPages, d.isolated.pages)
	for k, v := range d.perDIMM {
		m.RetiredPerDIMM[k] = v
	}
	d.mu.Unlock()
	return m, pageoffline.MemInfoRead{MemInfo: mi, Err: err}
}

// dimmOf names the DIMM a page case's FRU points at, "" when unknown.
func dimmOf(c fault.Case) string {
	for _, e := range c.Evidence {
		if e.DIMM != "" {
			return e.DIMM
		}
	}
	return ""
}

func uniqueInts(in []int) []int {
	sort.Ints(in)
	out := in[:0]
	for i, v := range in {
		if i == 0 || v != in[i-1] {
			out = append(out, v)
		}
	}
	return out
}
