package daemon

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/alert/notifiers"
	"github.com/selfprotect/selfprotect/cpuoffline"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/store"
)

// alerter owns the daemon's alerting: the notifiers built from the
// `alerts:` section, the outbox that queues into the store in the
// transaction of each state change, and the dispatcher with the notifiers'
// background work. A reload swaps the whole set; pending deliveries stay in
// the store and go out through the new one.
//
// Nothing here waits for a send: producers only write rows and kick the
// dispatcher, so a hung notifier never delays detection or isolation.
type alerter struct {
	log *logrus.Logger
	now func() time.Time

	mu     sync.Mutex // guards the fields below (swapped on reload)
	cfg    *alert.Config
	ns     []alert.NamedNotifier
	store  *store.Store
	outbox *alert.Outbox
	disp   *alert.Dispatcher
	stop   context.CancelFunc
	done   sync.WaitGroup
	ctx    context.Context // the daemon's, parent of every set's run

	healthMu sync.Mutex // guards open (written by the main loop, read by prune)
	// open holds each health problem announced and not yet cleared, as
	// raised (restored from the outbox at start): one alert per episode.
	open map[problemKey]alert.Alert
}

// loadAlerts reads and builds the `alerts:` section of the policy file; no
// file means no notifiers.
func loadAlerts(path string) (*alert.Config, []alert.NamedNotifier, error) {
	cfg := alert.DefaultConfig()
	if path != "" {
		var err error
		if cfg, err = alert.Load(path); err != nil {
			return nil, nil, err
		}
	}
	ns, err := notifiers.Build(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, ns, nil
}

func newAlerter(log *logrus.Logger, now func() time.Time, cfg *alert.Config, ns []alert.NamedNotifier) *alerter {
	return &alerter{log: log, now: now, cfg: cfg, ns: ns, open: map[problemKey]alert.Alert{}}
}

// start runs the dispatcher over st until ctx ends or close. Cases still
// open are handed to notifiers that keep them firing (Alertmanager), whose
// memory a restart emptied.
func (a *alerter) start(ctx context.Context, st *store.Store) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ctx, a.store = ctx, st
	a.restoreHealth()
	a.startLocked()
}

func (a *alerter) startLocked() {
	host := a.cfg.HostName()
	disp, err := alert.NewDispatcher(alert.StoreQueue{Store: a.store}, alert.DispatcherConfig{
		Notifiers: a.ns, InitialBackoff: a.cfg.Outbox.InitialBackoff, MaxBackoff: a.cfg.Outbox.MaxBackoff, Log: a.log,
	})
	if err != nil {
		// Validation rejects what NewDispatcher would (duplicate names,
		// bad backoff): reaching this is a bug, and alerts must not stop
		// protection.
		a.log.WithError(err).Error("alert dispatcher not started: alerts are queued but not sent")
		disp = nil
	}
	a.disp = disp
	a.outbox = &alert.Outbox{Store: a.store, Notifiers: a.ns, MaxPending: a.cfg.Outbox.MaxPending, Host: host}
	if disp != nil {
		a.outbox.Kick = disp.Kick
	}
	ctx, cancel := context.WithCancel(a.ctx)
	a.stop = cancel
	if disp != nil {
		a.done.Add(1)
		go func() { defer a.done.Done(); _ = disp.Run(ctx) }()
	}
	a.trackOpen(host)
	for _, n := range a.ns {
		bg, ok := n.Notifier.(alert.Background)
		if !ok {
			continue
		}
		log := a.log.WithField("notifier", n.Name)
		a.done.Add(1)
		go func() {
			defer a.done.Done()
			bg.Run(ctx, func(err error) { log.WithError(err).Warn("notifier background work failed; will retry") })
		}()
	}
	names := make([]string, 0, len(a.ns))
	for _, n := range a.ns {
		names = append(names, n.Name+" ("+n.Type+")")
	}
	if len(names) > 0 {
		a.log.WithField("notifiers", strings.Join(names, ", ")).Info("alerting")
	}
}

// trackOpen tells notifiers that keep open cases firing about the cases
// open at start.
func (a *alerter) trackOpen(host string) {
	type tracker interface{ Track(alert.Alert) }
	var ts []tracker
	for _, n := range a.ns {
		if t, ok := n.Notifier.(tracker); ok {
			ts = append(ts, t)
		}
	}
	if len(ts) == 0 {
		return
	}
	cases, err := a.store.Cases(store.CaseFilter{})
	if err != nil {
		a.log.WithError(err).Error("reading open cases for alert re-posting")
		return
	}
	for _, c := range cases {
		t, ok := openTransition(c)
		if !ok {
			continue
		}
		al := alert.FromCase(c, t, host, c.Opened, "", "")
		for _, tr := range ts {
			tr.Track(al)
		}
	}
	// Health problems not cleared fire until they are, like open cases.
	a.healthMu.Lock()
	for _, al := range a.open {
		for _, tr := range ts {
			tr.Track(al)
		}
	}
	a.healthMu.Unlock()
}

// openTransition is the alert that describes a case still open: the one
// its last transition raised.
func openTransition(c fault.Case) (alert.Transition, bool) {
	switch c.State {
	case fault.CaseOpen:
		if c.Diagnosis == fault.DiagStorm {
			return alert.StormStarted, true
		}
		return alert.Diagnosed, true
	case fault.CaseIsolated:
		return alert.Isolated, true
	case fault.CaseFailed:
		return alert.IsolationFailed, true
	}
	return "", false
}

// close stops the dispatcher and background work and waits for them: sends
// cut short stay pending and go out after the next start.
func (a *alerter) close() {
	a.mu.Lock()
	stop := a.stop
	a.mu.Unlock()
	if stop != nil {
		stop()
	}
	a.done.Wait()
}

// reload swaps in the notifiers of the re-read file. A bad section keeps
// the running set, like a bad policy.
func (a *alerter) reload(path string) {
	cfg, ns, err := loadAlerts(path)
	if err != nil {
		a.log.WithError(err).Error("alerts reload failed; keeping the running notifiers")
		return
	}
	a.close()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfg, a.ns = cfg, ns
	if a.store != nil {
		a.startLocked()
	}
	a.log.WithField("notifiers", len(ns)).Info("alerts reloaded")
}

func (a *alerter) current() (*alert.Outbox, *alert.Dispatcher, []alert.NamedNotifier) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.outbox, a.disp, a.ns
}

// currentStore is the store the outbox writes to, whose prepared
// statements the state changes use in the same transaction (nil before
// start: the statements are then parsed per call).
func (a *alerter) currentStore() *store.Store {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.store
}

func (a *alerter) host() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg.HostName()
}

// write runs change and queues the alerts in one transaction, then wakes
// the dispatcher: the state change and its alerts are durable together.
// The store is alert.Persistence itself (store/outboxseam.go).
func (a *alerter) write(what string, change func(tx *sql.Tx) error, alerts ...alert.Alert) error {
	return a.writeWith(nil, what, change, alerts...)
}

// writeWith is write through another transaction runner (nil: the
// outbox's own), such as the store's fsync'd one for write-ahead intents.
func (a *alerter) writeWith(run func(what string, fn func(tx *sql.Tx) error) error, what string, change func(tx *sql.Tx) error, alerts ...alert.Alert) error {
	o, _, _ := a.current()
	if o == nil {
		return fmt.Errorf("%s: alerting not started", what)
	}
	res, err := o.ApplyWith(run, what, a.now(), change, alerts...)
	if err != nil {
		return err
	}
	if len(res.DroppedFor) > 0 {
		a.log.WithField("notifiers", strings.Join(res.DroppedFor, ",")).WithField("dropped", res.Dropped).
			Error("alert outbox full: alerts dropped (counted in selfprotect_alert_dropped_total)")
	}
	return nil
}

// saveCase stores a newly diagnosed case with its alert.
func (a *alerter) saveCase(c fault.Case) error {
	st := a.currentStore()
	return a.write("saving case "+c.ID, func(tx *sql.Tx) error { return st.SaveCaseTx(tx, c) }, a.diagnosed(c))
}

// saveIntent stores a decision with its intended actions, its diagnosed
// alert and the events that fed it in one fsync'd transaction, before any
// kernel write.
func (a *alerter) saveIntent(st *store.Store, c fault.Case, intents []fault.Action, evidence ...fault.Event) error {
	return a.writeWith(st.WriteSynced, "saving intent for case "+c.ID, func(tx *sql.Tx) error {
		if err := st.AddEventsTx(tx, evidence); err != nil {
			return err
		}
		return st.SaveIntentTx(tx, c, intents)
	}, a.diagnosed(c))
}

// diagnosed is the alert of a new case: storm-started for the storm's
// case, its one alert (no case or event under it alerts).
func (a *alerter) diagnosed(c fault.Case) alert.Alert {
	t := alert.Diagnosed
	if c.Diagnosis == fault.DiagStorm {
		t = alert.StormStarted
	}
	return alert.FromCase(c, t, a.host(), a.now(), "", "")
}

// updateCaseState moves a case to st with its alerts.
func (a *alerter) updateCaseState(id string, st fault.CaseState, at time.Time, note string, alerts ...alert.Alert) error {
	s := a.currentStore()
	return a.write("updating case "+id, func(tx *sql.Tx) error { return s.UpdateCaseStateTx(tx, id, st, at, note) }, alerts...)
}

// raise queues alerts that change no other state.
func (a *alerter) raise(alerts ...alert.Alert) {
	if len(alerts) == 0 {
		return
	}
	if err := a.write("queueing alerts", nil, alerts...); err != nil {
		a.log.WithError(err).Error("queueing alerts failed")
	}
}

// settled is the alert of a case's isolation outcome: isolated (with the
// command that undoes it), refused by a budget (plus one budget-exhausted
// per budget and day), or failed. Replayed isolations after a restart
// alert only when they fail: their success was announced before.
func (a *alerter) settled(j job, actions []fault.Action, state fault.CaseState) []alert.Alert {
	c, host, now := j.c, a.host(), a.now()
	switch state {
	case fault.CaseIsolated:
		if j.replay {
			return nil
		}
		var undo []string
		for _, ac := range actions {
			if ac.Undo != "" {
				undo = append(undo, ac.Undo)
			}
		}
		return []alert.Alert{alert.FromCase(c, alert.Isolated, host, now, strings.Join(undo, "; "), "")}
	case fault.CaseFailed:
		var refused, failed []string
		budgets := map[string]bool{}
		for _, ac := range actions {
			switch ac.Outcome {
			case fault.OutcomeRefused:
				refused = append(refused, fmt.Sprintf("%s: %s", ac.Resource, ac.Detail))
				for _, b := range ac.Violations {
					budgets[b] = true
				}
			case fault.OutcomeIsolated, fault.OutcomeIsolatedByOther, fault.OutcomeAlreadyIsolated, fault.OutcomeDryRun:
			default:
				failed = append(failed, fmt.Sprintf("%s: %s", ac.Resource, ac.Detail))
			}
		}
		var out []alert.Alert
		if len(failed) > 0 {
			out = append(out, alert.FromCase(c, alert.IsolationFailed, host, now, "",
				"isolation failed: "+strings.Join(failed, "; ")))
		}
		if len(refused) > 0 {
			out = append(out, alert.FromCase(c, alert.Refused, host, now, "", strings.Join(refused, "; ")))
		}
		for _, b := range sortedKeys(budgets) {
			out = append(out, a.exhausted(c, b, fmt.Sprintf("case %s was refused", c.ID)))
		}
		return out
	}
	return nil
}

// wouldIsolate is dry-run's isolated: every budget and safety rule let the
// isolation through and only the mode kept it from the kernel, so a
// dry-run fleet sees what enforcing would do. The case stays open; a
// replayed decision announced it before.
func (a *alerter) wouldIsolate(j job, actions []fault.Action) []alert.Alert {
	if j.replay {
		return nil
	}
	var would []string
	for _, ac := range actions {
		if ac.Outcome == fault.OutcomeDryRun {
			would = append(would, ac.Kind+" "+string(ac.Resource))
		}
	}
	if len(would) == 0 {
		return nil
	}
	return []alert.Alert{alert.FromCase(j.c, alert.WouldIsolate, a.host(), a.now(), "",
		fmt.Sprintf("dry-run: would %s (budgets allow it); %s", strings.Join(would, ", "), j.c.Summary))}
}

// exhausted is the budget-exhausted alert of budget b, once per budget and
// day whichever case finds it used up.
func (a *alerter) exhausted(c fault.Case, b, why string) alert.Alert {
	host, now := a.host(), a.now()
	subject := alert.Subject("budget", b, now.UTC().Format("2006-01-02"))
	return alert.Alert{
		ID: alert.StableID(host, subject, alert.BudgetExhausted), Case: subject, Transition: alert.BudgetExhausted,
		Severity: alert.DefaultSeverity(alert.BudgetExhausted), Suspect: string(c.Suspect), FRU: c.FRU, Host: host, Time: now,
		Summary: fmt.Sprintf("budget %s is exhausted (%s): later cases it covers are refused until a case is repaired or the budget raised", b, why),
	}
}

// settledAlerts is alerter.settled plus a budget-exhausted when a page
// isolation just used a page budget up: the next page (on the same DIMM)
// would be refused, so the operator hears it before a case goes unisolated.
func (d *Daemon) settledAlerts(j job, actions []fault.Action, state fault.CaseState) []alert.Alert {
	out := d.alerts.settled(j, actions, state)
	if state != fault.CaseIsolated || j.replay {
		return out
	}
	if j.c.Suspect.Kind() == fault.KindCPU {
		return append(out, d.cpuExhausted(j.c, actions)...)
	}
	if j.c.Suspect.Kind() != fault.KindPage {
		return out
	}
	pfn, err := j.c.Suspect.PFN()
	if err != nil {
		return out
	}
	m := d.memoryBudget()
	d.policyMu.Lock()
	viol := d.cfg.CheckPage(m, pfn, dimmOf(j.c))
	d.policyMu.Unlock()
	for _, v := range viol {
		if v.Budget == "max_ram_retired_percent" || v.Budget == "max_pages_per_dimm" {
			out = append(out, d.alerts.exhausted(j.c, v.Budget, v.Detail+" after case "+j.c.ID))
		}
	}
	return out
}

// cpuExhausted is budget-exhausted as soon as a CPU offline leaves too few
// CPUs online for any further one: min_online_cpus or
// min_online_cpu_fraction would refuse the next. One more online CPU
// stands for every candidate, since those budgets only count how many
// stay; cpu_offline_interval is left out, as every offline uses it up for
// its interval. The CPUs this case just offlined count as offline even if
// the kernel's online list does not show it yet (it is updated apart from
// the cpuN/online file we verified).
func (d *Daemon) cpuExhausted(c fault.Case, actions []fault.Action) []alert.Alert {
	topo, err := cpuoffline.ReadTopology(d.opts.Paths, d.opts.FS)
	if err != nil {
		return nil
	}
	m := d.cpuBudget(topo)
	m.LastCPUOffline = time.Time{}
	for _, a := range actions {
		if n, err := a.Resource.CPUNumber(); err == nil && a.Outcome == fault.OutcomeIsolated {
			m.Online[n] = false
		}
	}
	next := -1
	for n, on := range m.Online {
		if on && n > next {
			next = n
		}
	}
	if next < 0 {
		return nil
	}
	d.policyMu.Lock()
	viol := d.cfg.CheckCPU(m, []int{next}, d.now())
	d.policyMu.Unlock()
	var out []alert.Alert
	for _, v := range viol {
		if v.Budget == "min_online_cpus" || v.Budget == "min_online_cpu_fraction" {
			out = append(out, d.alerts.exhausted(c, v.Budget, v.Detail+" after case "+c.ID))
		}
	}
	return out
}

// byKernel is the isolated alert of a page the kernel's memory-failure
// handler took out of service itself: nothing of ours to undo.
func (a *alerter) byKernel(c fault.Case, detail string) alert.Alert {
	return alert.FromCase(c, alert.Isolated, a.host(), a.now(), "", "isolated by the kernel itself: "+detail)
}

// resolved is the alert of an operator's repair, acquittal or replacement
// of case c, whose actions are acts.
func (a *alerter) resolved(c fault.Case, acts []fault.Action, verb, note string) alert.Alert {
	t := map[string]alert.Transition{"repair": alert.Repaired, "acquit": alert.Acquitted, "replaced": alert.Replaced}[verb]
	r := alert.FromCase(c, t, a.host(), a.now(), "", fmt.Sprintf("%s: %s", c.Summary, note))
	r.Ends = announced(c, acts)
	return r
}

// announced are the transitions of the alerts case c raised before its
// resolution, read from its actions as settled and wouldIsolate raised
// them: the resolution goes wherever one of them went (alert.Route).
func announced(c fault.Case, acts []fault.Action) []alert.Transition {
	open := alert.Diagnosed
	if c.Diagnosis == fault.DiagStorm {
		open = alert.StormStarted
	}
	out := []alert.Transition{open}
	for _, ac := range acts {
		var t alert.Transition
		switch ac.Outcome {
		case fault.OutcomeIsolated, fault.OutcomeIsolatedByOther:
			t = alert.Isolated
		case fault.OutcomeRefused:
			t = alert.Refused
		case fault.OutcomeDryRun:
			t = alert.WouldIsolate
		case fault.OutcomeFailed, fault.OutcomeNotPresent:
			t = alert.IsolationFailed
		default:
			continue
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// stormEnded is the alert closing a storm's case.
func (a *alerter) stormEnded(caseID, note string) alert.Alert {
	e := alert.FromCase(fault.Case{ID: caseID, Suspect: fault.Machine, Summary: "corrected error " + note},
		alert.StormEnded, a.host(), a.now(), "", "")
	e.Ends = []alert.Transition{alert.StormStarted}
	return e
}

// prune drops delivered rows older than keep_sent, except those of health
// problems still open: they are the record that the problem was announced.
func (a *alerter) prune() {
	o, _, _ := a.current()
	if o == nil {
		return
	}
	a.mu.Lock()
	keep := a.cfg.Outbox.KeepSent
	a.mu.Unlock()
	if n, err := o.Prune(a.now(), keep, a.openSubjects()...); err != nil {
		a.log.WithError(err).Error("pruning the alert outbox")
	} else if n > 0 {
		a.log.WithField("deliveries", n).Info("pruned delivered alerts older than keep_sent")
	}
}

// snapshot is the per-notifier line of `status`.
func (a *alerter) snapshot() []alert.NotifierStatus {
	o, d, ns := a.current()
	if o == nil || len(ns) == 0 {
		return nil
	}
	snap, err := alert.Snapshot(o.Store, d, ns)
	if err != nil {
		a.log.WithError(err).Warn("reading the alert outbox for status")
		return nil
	}
	return snap
}

// alertCollector exports the current notifiers' figures to /metrics; the
// set changes on reload, so it is looked up at each scrape.
type alertCollector struct{ a *alerter }

func (c alertCollector) Describe(ch chan<- *prometheus.Desc) { alert.Collector{}.Describe(ch) }

func (c alertCollector) Collect(ch chan<- prometheus.Metric) {
	o, d, ns := c.a.current()
	if o == nil {
		return
	}
	alert.Collector{Store: o.Store, Dispatcher: d, Notifiers: ns}.Collect(ch)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
