package daemon

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// fleet holds the figures /metrics shows beyond Status: errors per DIMM,
// actions by kind and outcome, when the health check last ran. Its owner
// is this type alone: writers are the main loop (DIMM counts, health) and
// the action worker (actions), each through a method; a scrape copies.
type fleet struct {
	mu sync.Mutex
	// dimmErrors counts errors by DIMM location, for the first
	// maxDIMMLocations locations that report; later ones go to
	// dimmOverflow, so a decoding bug or a storm of odd labels cannot blow
	// up the series count.
	dimmErrors   map[dimmLocation]uint64
	dimmOverflow uint64
	actions      map[[2]string]uint64 // {kind, outcome}

	healthRan, healthOK atomic.Int64 // unix nanoseconds, 0 = never
}

// dimmLocation is a DIMM as the engine keys it: controller and label, or
// the MCA-decoded location alone (mc < 0). Keeping it unformatted spares
// the event path an allocation.
type dimmLocation struct {
	mc    int
	label string
}

func (l dimmLocation) String() string {
	if l.mc < 0 {
		return l.label
	}
	return "mc" + strconv.Itoa(l.mc) + "/" + l.label
}

// maxDIMMLocations is far above the DIMMs of any x86 server (8 sockets ×
// 12 channels × 2).
const maxDIMMLocations = 256

func newFleet() *fleet {
	return &fleet{dimmErrors: map[dimmLocation]uint64{}, actions: map[[2]string]uint64{}}
}

// dimm counts an event's errors against its DIMM: called for the record
// that first names the DIMM for them (the count-once stage's DIMM facet),
// so each error counts once, as in the DIMM rule.
func (f *fleet) dimm(ev *fault.Event) {
	if ev.DIMMLabel == "" {
		return
	}
	loc := dimmLocation{mc: ev.MC, label: ev.DIMMLabel}
	n := uint64(max(ev.Count, 1))
	f.mu.Lock()
	if _, ok := f.dimmErrors[loc]; ok || len(f.dimmErrors) < maxDIMMLocations {
		f.dimmErrors[loc] += n
	} else {
		f.dimmOverflow += n
	}
	f.mu.Unlock()
}

func (f *fleet) action(kind string, outcome fault.Outcome) {
	f.mu.Lock()
	f.actions[[2]string{kind, string(outcome)}]++
	f.mu.Unlock()
}

func (f *fleet) healthChecked(at time.Time, healthy bool) {
	f.healthRan.Store(at.UnixNano())
	if healthy {
		f.healthOK.Store(at.UnixNano())
	}
}

type fleetSnapshot struct {
	dimmErrors   map[dimmLocation]uint64
	dimmOverflow uint64
	actions      map[[2]string]uint64
}

func (f *fleet) snapshot() fleetSnapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := fleetSnapshot{dimmErrors: make(map[dimmLocation]uint64, len(f.dimmErrors)), dimmOverflow: f.dimmOverflow,
		actions: make(map[[2]string]uint64, len(f.actions))}
	for k, v := range f.dimmErrors {
		s.dimmErrors[k] = v
	}
	for k, v := range f.actions {
		s.actions[k] = v
	}
	return s
}

var (
	descDIMMErrors = prometheus.NewDesc("selfprotect_dimm_errors_total",
		"Memory errors by DIMM location (the EDAC label, or the location decoded from the MCA record), counted once as the DIMM rule counts them; only locations that reported, at most 256.", []string{"dimm"}, nil)
	descDIMMOverflow = prometheus.NewDesc("selfprotect_dimm_errors_unlisted_total",
		"Memory errors on DIMM locations beyond the 256 listed in selfprotect_dimm_errors_total.", nil, nil)
	descActionsKind = prometheus.NewDesc("selfprotect_actions_total",
		"Actions since start by kind (soft-offline, hard-offline, cpu-offline) and outcome.", []string{"kind", "outcome"}, nil)
	descLevel = prometheus.NewDesc("selfprotect_engine_level",
		"Errors (or distinct pages for the *-pages rules) in the rule's window for the resources closest to tripping, at most 5 per rule; the storm rule's is the machine's error count over its averaging window.", []string{"rule", "resource"}, nil)
	descThreshold = prometheus.NewDesc("selfprotect_engine_threshold",
		"The count at which each enabled rule trips (the storm rule: errors per averaging window).", []string{"rule"}, nil)
	descBudgetUsed = prometheus.NewDesc("selfprotect_budget_used",
		"How much of each budget is used: retired_pages (by anyone), offline_cpus (by anyone), pages_on_worst_dimm (retired by us).", []string{"budget"}, nil)
	descBudgetLimit = prometheus.NewDesc("selfprotect_budget_limit",
		"Each budget's limit under the running policy: what is left is limit - used.", []string{"budget"}, nil)
	descHealthRan = prometheus.NewDesc("selfprotect_health_check_timestamp_seconds",
		"When the health check last ran (0: never).", nil, nil)
	descHealthOK = prometheus.NewDesc("selfprotect_health_check_last_success_timestamp_seconds",
		"When the health check last found every source armed and nothing degraded (0: never).", nil, nil)
)

// fleetCollector exports fleet, the engines' hottest levels and the
// budgets. Everything it reads is in memory: the engine under policyMu for
// a few lookups, never the store.
type fleetCollector struct{ d *Daemon }

func (fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDIMMErrors, descDIMMOverflow, descActionsKind, descLevel, descThreshold,
		descBudgetUsed, descBudgetLimit, descHealthRan, descHealthOK} {
		ch <- d
	}
}

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	f := d.fleet.snapshot()
	for loc, n := range f.dimmErrors {
		counter(descDIMMErrors, float64(n), loc.String())
	}
	counter(descDIMMOverflow, float64(f.dimmOverflow))
	for k, n := range f.actions {
		counter(descActionsKind, float64(n), k[0], k[1])
	}

	d.policyMu.Lock()
	hot := d.engine.Hottest()
	cfg := d.cfg
	d.policyMu.Unlock()
	for _, h := range hot {
		gauge(descLevel, float64(h.Count), h.Rule, string(h.Resource))
	}
	for _, t := range thresholds(cfg) {
		gauge(descThreshold, t.value, t.rule)
	}

	d.mu.Lock()
	b := d.budget
	worst := 0
	for _, n := range d.perDIMM {
		worst = max(worst, n)
	}
	d.mu.Unlock()
	gauge(descBudgetUsed, float64(b.PagesRetired), "retired_pages")
	gauge(descBudgetLimit, float64(b.PagesRetiredLimit), "retired_pages")
	gauge(descBudgetUsed, float64(b.CPUsPresent-b.CPUsOnline), "offline_cpus")
	gauge(descBudgetLimit, float64(cpuOfflineLimit(cfg.Budgets, b.CPUsPresent)), "offline_cpus")
	gauge(descBudgetUsed, float64(worst), "pages_on_worst_dimm")
	gauge(descBudgetLimit, float64(cfg.Budgets.MaxPagesPerDIMM), "pages_on_worst_dimm")

	gauge(descHealthRan, unixSeconds(d.fleet.healthRan.Load()))
	gauge(descHealthOK, unixSeconds(d.fleet.healthOK.Load()))
}

// cpuOfflineLimit is how many of present CPUs may be offline at once
// under min_online_cpus and min_online_cpu_fraction (policy.CheckCPU's
// rule); the deny-list and the one-per-interval rule can refuse earlier.
func cpuOfflineLimit(b policy.Budgets, present int) int {
	// The epsilon matches CheckCPU's: 0.7 × 10 needs 7, not 8.
	need := max(b.MinOnlineCPUs, int(math.Ceil(b.MinOnlineCPUFraction*float64(present)-1e-9)))
	return max(present-need, 0)
}

type ruleThreshold struct {
	rule  string
	value float64
}

// thresholds lists the enabled rules' trip counts, named as in
// selfprotect_engine_level.
func thresholds(cfg *policy.Config) []ruleThreshold {
	r := &cfg.Rules
	var out []ruleThreshold
	add := func(on bool, rule string, v float64) {
		if on {
			out = append(out, ruleThreshold{rule, v})
		}
	}
	add(r.Page.Enabled, policy.RulePage, float64(r.Page.Threshold))
	add(r.DIMM.Enabled, policy.RuleDIMM, float64(r.DIMM.Errors))
	add(r.DIMM.Enabled, policy.RuleDIMM+"-pages", float64(r.DIMM.DistinctPages))
	add(r.Row.Enabled, policy.RuleRow+"-pages", float64(r.Row.DistinctPages))
	add(r.CPU.Enabled, policy.RuleCPU, float64(r.CPU.Threshold))
	add(r.CPU.Enabled, policy.RuleCache, float64(r.CPU.Threshold))
	// The engine's own limit: rate × over, truncated as it does.
	add(r.Storm.Enabled, policy.RuleStorm, float64(uint64(r.Storm.Rate*r.Storm.Over.Seconds())))
	return out
}

func unixSeconds(ns int64) float64 {
	if ns == 0 {
		return 0
	}
	return float64(ns) / 1e9
}
