// Package daemon is the one place that wires sources → policy → actuators →
// store. Everything it wires is a plain value handed in or built from Options,
// so the same code runs on a server, on the simulator and in tests.
package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/countonce"
	"github.com/selfprotect/selfprotect/cpuoffline"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
	"github.com/selfprotect/selfprotect/pageoffline"
	"github.com/selfprotect/selfprotect/policy"
	"github.com/selfprotect/selfprotect/store"
)

// Options configure one daemon run.
type Options struct {
	Paths      kpath.Paths
	FS         kpath.FS
	StateDir   string
	Socket     string
	PolicyPath string // "" = built-in defaults
	// DryRun forces dry-run whatever the policy says.
	DryRun  bool
	Version string
	Log     *logrus.Logger
	// HealthInterval is how often sources and the kernel are checked and
	// the watchdog pinged; 0 = DefaultHealthInterval, shortened to half
	// the systemd watchdog timeout when that is shorter.
	HealthInterval time.Duration
	// TraceBufferKB is the per-CPU size of the daemon's trace instance.
	TraceBufferKB int
	// MetricsListen is the address of the Prometheus endpoint, "" = none.
	MetricsListen string
	// EventRetention is how long the error history is kept (cases and
	// actions are kept forever); 0 = 30 days.
	EventRetention time.Duration
	// NoEBPF keeps the eBPF source off: the tracepoints are read through
	// tracefs.
	NoEBPF bool
	// EBPFArmAfter is for tests only (the kernel suite's hand-over
	// scenario): the eBPF source reports unavailable until this long after
	// start and is retried then, so tracefs covers the start and hands
	// over to it, as when eBPF arms late on a real host. 0 = off.
	EBPFArmAfter time.Duration
	// HandoverAfter is for tests only: a fallback keeps reading this long
	// after a preferred source armed before it is told to stand down, so
	// the two overlap (and their records are matched) for at least this
	// long, as on a busy host whose drain is slow. 0 = at once.
	HandoverAfter time.Duration
	// EBPFDieAfter is for tests only: the eBPF source's reader fails this
	// long after it started, leaving records unread (ebpfsource
	// Config.TestDieAfter), to prove the fall-back to tracefs loses none.
	EBPFDieAfter time.Duration
	Now          func() time.Time
}

// Daemon is one running selfprotect.
type Daemon struct {
	opts  Options
	log   *logrus.Logger
	now   func() time.Time
	store *store.Store
	// journal is the decisions' write-ahead record (action worker; nil
	// when it cannot be opened); journalAtStart is what it held at start,
	// for recoverState to import.
	journal        *store.Journal
	journalAtStart []store.JournalDecision

	policyMu sync.Mutex
	cfg      *policy.Config
	engine   *policy.Engine
	// stage decides what each memory record adds (main loop only; its
	// Stats are safe anywhere).
	stage *countonce.Stage
	// verdicts is the stage's output buffer, reused per record.
	verdicts []countonce.Verdict
	// rules is the configuration whose rules the engines count under, or
	// will once the rebuild in flight is installed: what a reload compares
	// with (main loop only).
	rules *policy.Config
	// rebuilding is the SIGHUP rebuild in flight, nil when none (main loop
	// only; rebuild.go).
	rebuilding *rebuild
	// rebuilds counts the rebuild goroutines still running, for stop.
	rebuilds sync.WaitGroup
	// rearmed collects what an operator re-armed (resolveCase) while
	// collectRearmed is set, during a rebuild: the engine being built
	// missed it (guarded by policyMu).
	rearmed        []fault.Resource
	collectRearmed bool
	// tailCap bounds a rebuild's tail (rebuildTailCap; tests shrink it).
	tailCap int
	// readSnapshot reads a rebuild's snapshot, nil = EventSnapshot.Each
	// (tests slow it down).
	readSnapshot func(ctx context.Context, snap *store.EventSnapshot, q store.EventQuery, fn func(fault.Event) error) error

	// intake is the sources' channel to the main loop (status reads its
	// length).
	intake chan fault.Event

	cpus  *cpuoffline.Offliner
	pages *pageoffline.Offliner

	paused  atomic.Bool
	acting  atomic.Int32 // 1 while the action worker executes a job
	started time.Time
	armed   atomic.Bool
	// armedChecked is set after the first updateArmed (main loop only).
	armedChecked bool
	storming     atomic.Bool

	counters counters
	metrics  *metrics
	fleet    *fleet
	alerts   *alerter
	sources  *sourceSet
	jobs     *jobQueue
	// syncQ asks the history writer to store what it holds with a
	// decision (syncReq); storeDone closes when it has stopped.
	syncQ     chan syncReq
	storeDone chan struct{}
	flushQ    chan struct{} // asks the history writer to write now (stormtick.go)
	writes    writes
	cases     *caseBook

	// recheck asks the main loop for a budget reading out of turn (an
	// action changed the budgets); it holds at most one request.
	recheck chan struct{}
	// actGen is odd while the action worker runs a job: a health check
	// that saw it odd, or saw it move, may have read the kernel between a
	// write of ours and its record.
	actGen atomic.Uint64

	mu       sync.Mutex // guards the fields below
	problems []string
	kernel   KernelStatus
	budget   BudgetStatus
	// settledBudget is the last budget read with no action in flight: what
	// the "retired by someone else" notices compare with.
	settledBudget BudgetStatus
	pending       []job
	outcomes      map[string]int
	edacBound     bool
	cec           countonce.Machine
	lastCPUOff    time.Time
	// lastCPUOffRun is the last CPU offline of this run (restores after a
	// reboot pace each other by it); deferred are restores it held back.
	lastCPUOffRun time.Time
	deferred      []deferredJob
	// perDIMM counts pages we retired on each DIMM (budget max_pages_per_dimm).
	perDIMM     map[string]int
	metricsAddr string
	// isolated holds every resource found or made isolated (never act twice).
	isolated isolatedSet
	// byOther marks the isolated resources another actor (the kernel's
	// memory-failure handler or CEC, rasdaemon, an admin) took out.
	byOther map[fault.Resource]bool
}

type counters struct {
	received, counted, errors, stored, notStored atomic.Uint64
}

// New checks the options and loads the policy; it touches nothing yet.
func New(opts Options) (*Daemon, error) {
	if opts.Log == nil {
		opts.Log = logrus.New()
	}
	if opts.FS == nil {
		opts.FS = kpath.OS{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = DefaultHealthInterval
	}
	if opts.EventRetention <= 0 {
		opts.EventRetention = 30 * 24 * time.Hour
	}
	if opts.TraceBufferKB <= 0 {
		opts.TraceBufferKB = 256
	}
	opts.Paths = opts.Paths.Resolve()
	cfg, err := loadPolicy(opts.PolicyPath)
	if err != nil {
		return nil, err
	}
	acfg, ns, err := loadAlerts(opts.PolicyPath)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		opts:      opts,
		log:       opts.Log,
		now:       opts.Now,
		cfg:       cfg,
		engine:    policy.NewEngine(cfg),
		rules:     cfg,
		tailCap:   rebuildTailCap,
		stage:     countonce.New(countonce.Options{}),
		outcomes:  map[string]int{},
		perDIMM:   map[string]int{},
		isolated:  newIsolatedSet(),
		byOther:   map[fault.Resource]bool{},
		jobs:      newJobQueue(),
		syncQ:     make(chan syncReq),
		flushQ:    make(chan struct{}, 1),
		recheck:   make(chan struct{}, 1),
		storeDone: make(chan struct{}),
		cases:     newCaseBook(),
		fleet:     newFleet(),
		alerts:    newAlerter(opts.Log, opts.Now, acfg, ns),
	}
	for _, w := range cfg.Warnings() {
		opts.Log.Warn("policy: " + w)
	}
	d.metrics = newMetrics(d)
	d.cpus = cpuoffline.New(opts.Paths, opts.FS, cpuoffline.Options{Log: opts.Log, Now: opts.Now})
	// A real kernel has poisoned the page when the write returns; the longer
	// verify window (10 ms doubling, ~10 s in all) only costs anything when
	// the offline is applied asynchronously, as by the simulator under load
	// (~2.5 s was once too short for it mid-storm at a load average of 44:
	// a page it did poison was recorded as failed).
	d.pages = pageoffline.New(opts.Paths, opts.FS, pageoffline.Options{Log: opts.Log, Now: opts.Now, VerifyReads: 11})
	return d, nil
}

func loadPolicy(path string) (*policy.Config, error) {
	if path == "" {
		return policy.Defaults(), nil
	}
	return policy.Load(path)
}

func (d *Daemon) dryRun() bool {
	d.policyMu.Lock()
	defer d.policyMu.Unlock()
	return d.opts.DryRun || d.cfg.Mode == policy.ModeDryRun
}

func (d *Daemon) mode() policy.Mode {
	if d.dryRun() {
		return policy.ModeDryRun
	}
	return policy.ModeEnforce
}

// Run is the daemon: it returns when ctx ends (SIGTERM) or a fatal error
// happens. reload receives a value on SIGHUP.
func (d *Daemon) Run(ctx context.Context, reload <-chan struct{}) error {
	lock, err := lockState(d.opts.StateDir, d.opts.Socket)
	if err != nil {
		return err
	}
	defer lock.release()

	// A corrupt store is moved aside rather than fatal: exiting would
	// crash-loop under Restart=on-failure and leave the host unprotected.
	st, rec, err := store.OpenRecovering(filepath.Join(d.opts.StateDir, "selfprotect.db"), d.now())
	if err != nil {
		return err
	}
	defer st.Close()
	switch {
	case rec != nil && rec.MovedTo != "":
		d.log.WithError(rec.Cause).WithField("moved_to", rec.MovedTo).
			Error("the store was corrupt: moved aside, starting a fresh history (pages and CPUs already offline count against the budgets as isolated by others)")
	case rec != nil && rec.WasEmpty:
		d.log.WithField("store", st.Path()).
			Error("the store was an empty file: its history is lost; starting a fresh one (pages and CPUs already offline count against the budgets as isolated by others)")
	}
	d.store = st
	d.pages.Open(d.dryRun())
	defer d.pages.Close()
	d.openJournal()
	if d.journal != nil {
		defer d.journal.Close()
	}
	d.started = d.now()
	if err := d.cases.load(st); err != nil {
		d.log.WithError(err).Error("counting stored cases; status counts only this run's")
	}

	ln, err := listenControl(d.opts.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(d.opts.Socket)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.alerts.start(ctx, st)
	defer d.alerts.close()
	go serveControl(ctx, ln, d.handle)
	go d.serveMetrics(ctx, d.opts.MetricsListen)

	d.log.WithFields(logrus.Fields{"mode": d.mode(), "sys": d.opts.Paths.Sys, "proc": d.opts.Paths.Proc,
		"tracing": d.opts.Paths.Tracing, "state": d.opts.StateDir}).Info("selfprotect starting")

	d.inspectKernel()

	events := make(chan fault.Event, 4096)
	sources := d.startSources(ctx, events) // takes d.mu itself
	d.mu.Lock()
	d.intake = events
	d.sources = sources
	d.mu.Unlock()
	defer d.sources.close()
	// Before the main loop takes the sources' events (they wait in their
	// channel): the stage has its DIMM layout, the engines their counts.
	d.recoverState()

	var wg sync.WaitGroup
	storeQ := make(chan fault.Event, 8192)
	wg.Add(2)
	go func() { defer wg.Done(); d.storeEvents(storeQ) }()
	go func() { defer wg.Done(); d.actLoop(ctx) }()

	// READY=1 goes out even with no source armed: the daemon answers on its
	// socket and `status` says what is missing, where a unit stuck in
	// "activating" would say nothing.
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		d.log.WithError(err).Warn("sd_notify READY failed")
	}
	d.updateArmed()

	every := healthEvery(d.opts.HealthInterval, watchdogTimeout(d.log))
	d.log.WithField("every", every).Debug("health check and watchdog period")
	health := time.NewTicker(every)
	defer health.Stop()
	busy := newOnDemand(min(busyTick, every))
	defer busy.stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	d.jobs.push(job{fn: d.pruneHistory})
	d.checkHealth()
	d.releaseStartupMemory()
	for {
		d.setBusy(busy)
		select {
		case <-ctx.Done():
			d.log.Info("stopping")
			d.armed.Store(false)
			_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
			cancel()
			d.stopRebuild()
			d.sources.wait()
			// Records the sources delivered but the loop had not taken yet
			// go to the history, so the next start counts them.
			for drained := false; !drained; {
				select {
				case ev := <-events:
					d.observe(ev, storeQ)
				default:
					drained = true
				}
			}
			close(storeQ)
			wg.Wait()
			d.retryWrites()
			if n := d.writes.heldN.Load(); n > 0 {
				d.log.WithField("records", n).Error("stopping with store writes still failing: these records are lost; the next start settles decisions against the kernel")
			}
			return nil
		case ev := <-events:
			d.observe(ev, storeQ)
		case <-d.sources.changed:
			d.checkHealth() // a source stopped: its standby takes over now
		case <-reload:
			d.reload(ctx)
		case res := <-d.rebuildResult():
			d.finishRebuild(res)
		case <-prune.C:
			d.jobs.push(job{fn: d.pruneHistory})
		case <-d.recheck:
			d.updateBudget() // an action changed what the budgets count
		case <-busy.C():
			d.busyTick()
			if d.sources.handingOver() {
				d.checkHealth()
			}
		case <-health.C:
			d.tick()
			d.checkHealth()
			_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		}
	}
}

// pruneHistory applies the event retention.
func (d *Daemon) pruneHistory() {
	n, err := d.store.PruneEvents(d.now().Add(-d.opts.EventRetention))
	if err != nil {
		d.log.WithError(err).Error("pruning the event history")
	} else if n > 0 {
		d.log.WithField("events", n).Info("pruned events older than the retention")
	}
	d.alerts.prune()
}

// tick lets the engine end a storm (no event arrives to tell it the storm
// is over) and expire old entries.
func (d *Daemon) tick() {
	d.policyMu.Lock()
	end := d.engine.Tick(d.now())
	storming := d.engine.Storming()
	d.policyMu.Unlock()
	// Counter deltas held for their mc_events count even when no record
	// arrives to move the stage along.
	d.feed(d.stage.Flush(d.now()), d.now())
	d.storming.Store(storming)
	if end == nil {
		return
	}
	d.log.WithFields(logrus.Fields{"case": end.CaseID, "started": trimTime(end.Started)}).
		Info("corrected-error storm over; per-event logging resumes")
	note := fmt.Sprintf("storm ended %s after %s", trimTime(end.Ended), end.Ended.Sub(end.Started).Round(time.Second))
	alerts := d.alerts.stormEnded(end.CaseID, note)
	d.jobs.push(job{fn: func() { d.setCaseState(end.CaseID, fault.CaseClosed, end.Ended, note, alerts) }})
}

// reload re-reads the policy. A bad file keeps the running policy: losing
// protection because of a typo would be worse than ignoring the change.
// Engines keep their counts when the rules are unchanged (budgets, deny
// lists, mode apply at once); changed rules rebuild them from the stored
// events of the window, beside the intake (rebuild.go): until that is
// done the old engines count and decide.
func (d *Daemon) reload(ctx context.Context) {
	cfg, err := loadPolicy(d.opts.PolicyPath)
	if err != nil {
		d.log.WithError(err).Error("policy reload failed; keeping the running policy")
		return
	}
	for _, w := range cfg.Warnings() {
		d.log.Warn("policy: " + w)
	}
	d.policyMu.Lock()
	d.cfg = cfg
	d.policyMu.Unlock()
	same := reflect.DeepEqual(d.rules.Rules, cfg.Rules) && reflect.DeepEqual(d.rules.Engine, cfg.Engine)
	// The alerts: section lives in the same file; a bad one keeps the
	// running notifiers, whatever the rules did.
	d.alerts.reload(d.opts.PolicyPath)
	if same {
		msg := "policy reloaded; rules unchanged, rate engines keep their counts"
		if d.rebuilding != nil {
			msg = "policy reloaded; rules unchanged, the rebuild under them goes on"
		}
		d.log.WithField("mode", d.mode()).Info(msg)
		return
	}
	superseded := d.rebuilding != nil
	d.startRebuild(ctx, cfg, 0)
	if d.rebuilding != nil {
		d.log.WithFields(logrus.Fields{"mode": d.mode(), "superseded": superseded}).
			Info("policy reloaded; rebuilding the rate engines under the new rules")
	}
}

// handle answers control requests.
func (d *Daemon) handle(req Request) Response {
	switch req.Command {
	case "status":
		s := d.Status()
		return Response{OK: true, Status: &s}
	case "pause":
		d.paused.Store(true)
		d.log.Warn("isolation paused by operator; errors are still counted")
		s := d.Status()
		return Response{OK: true, Status: &s}
	case "resume":
		d.paused.Store(false)
		d.log.Info("isolation resumed by operator")
		d.resumePending()
		s := d.Status()
		return Response{OK: true, Status: &s}
	case "levels":
		return d.levels(req.Resource)
	case "repair", "acquit", "replaced":
		msg, err := d.resolveCase(req.Case, fault.CaseState(map[string]string{
			"repair": "repaired", "acquit": "acquitted", "replaced": "repaired"}[req.Command]), req.Command)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true, Message: msg}
	}
	return Response{Error: fmt.Sprintf("unknown command %q", req.Command)}
}

// Status snapshots the daemon for the CLI. The notifiers' queues come from
// the outbox in the store, read outside d.mu: the action worker and the
// health check take that lock.
func (d *Daemon) Status() Status {
	s := d.status()
	s.Alerts = d.alerts.snapshot()
	return s
}

// status is Status without the notifiers (metrics export them on their own).
func (d *Daemon) status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Status{
		Version:  d.opts.Version,
		PID:      os.Getpid(),
		Started:  d.started,
		Armed:    d.armed.Load(),
		Mode:     d.mode(),
		Paused:   d.paused.Load(),
		Storming: d.storming.Load(),
		Problems: append([]string(nil), d.problems...),
		Kernel:   d.kernel,
		Budgets:  d.budget,
		Pending:  d.jobs.len() + int(d.acting.Load()),
		Held:     len(d.pending),
		Metrics:  d.metricsAddr,
		Actions:  map[string]int{},
	}
	// Read live, not at the health tick: a failed write degrades status at
	// once.
	if p := d.storeProblem(); p != "" {
		s.Problems = append(s.Problems, p)
	}
	s.Degraded = len(s.Problems) > 0
	for k, v := range d.outcomes {
		s.Actions[k] = v
	}
	if d.sources != nil {
		s.Sources = d.sources.status()
	}
	cs := d.stage.Stats()
	s.Events = EventCounters{
		Received: d.counters.received.Load(), Queued: len(d.intake), Counted: d.counters.counted.Load(),
		Errors: d.counters.errors.Load(),
		Merged: cs.Merged["mce_record"] + cs.Merged["mc_event"] + cs.Merged["extlog_mem_event"],
		Stored: d.counters.stored.Load(), NotStored: d.counters.notStored.Load(),
		EDACCredited: cs.EDACCredited, FirstBy: cs.First, HeldDeltas: d.stage.Held(),
	}
	m := d.cec
	m.EDAC = d.edacBound
	s.CountPaths = d.stage.Describe(m)
	if d.sources != nil {
		d.sources.addCounters(&s.Events)
	}
	s.Cases, s.CasesByState, s.CasesTotal = d.cases.snapshot()
	s.StoreFailures = d.writes.failures.Load()
	s.HeldWrites = int(d.writes.heldN.Load())
	return s
}

func summarize(c fault.Case) CaseSummary {
	return CaseSummary{ID: c.ID, Diagnosis: c.Diagnosis, Suspect: string(c.Suspect),
		FRU: c.FRU, State: c.State, Summary: c.Summary}
}

// updateArmed follows the sources: armed while at least one reads events.
func (d *Daemon) updateArmed() {
	names := d.sources.names()
	was := d.armed.Swap(names != "")
	switch {
	case names != "" && !was:
		d.log.WithField("sources", names).Info("sources armed, watching for hardware errors")
		_, _ = daemon.SdNotify(false, "STATUS=watching ("+names+")")
	case names == "" && (was || !d.armedChecked):
		d.log.Error("no event source is armed: hardware errors are not watched")
	}
	if names == "" {
		_, _ = daemon.SdNotify(false, "STATUS=no event source armed; see selfprotect status")
	}
	d.armedChecked = true
}
