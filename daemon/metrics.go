package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// metrics are what a fleet's Prometheus scrapes. Only the per-event counter
// is touched on the hot path; everything else is read from Status() when
// scraped, so the two can never disagree.
type metrics struct {
	reg    *prometheus.Registry
	events *prometheus.CounterVec
	// byKind caches events' counters: WithLabelValues hashes three strings
	// at every record, an eighth of the main loop's work per record. Main
	// loop only.
	byKind map[eventKind]prometheus.Counter
}

// eventKind is one combination of the per-event counter's labels.
type eventKind struct {
	source   fault.Source
	class    fault.Class
	severity fault.Severity
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "selfprotect_errors_total",
			Help: "Hardware errors counted by the policy (an event's error count), by source, class and severity.",
		}, []string{"source", "class", "severity"}),
		byKind: map[eventKind]prometheus.Counter{},
	}
	m.reg.MustRegister(m.events, statusCollector{d}, fleetCollector{d}, alertCollector{d.alerts},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) count(ev *fault.Event) {
	k := eventKind{ev.Source, ev.Class, ev.Severity}
	c, ok := m.byKind[k]
	if !ok {
		c = m.events.WithLabelValues(string(ev.Source), ev.Class.String(), ev.Severity.String())
		m.byKind[k] = c
	}
	c.Add(float64(ev.Count))
}

// serveMetrics serves /metrics on addr until ctx ends. A bind failure is
// logged and shown in status but does not stop the daemon: isolation
// matters more than its dashboard.
func (d *Daemon) serveMetrics(ctx context.Context, addr string) {
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		d.log.WithError(err).Error("metrics endpoint unavailable")
		d.mu.Lock()
		d.metricsAddr = "unavailable: " + err.Error()
		d.mu.Unlock()
		return
	}
	d.mu.Lock()
	d.metricsAddr = "http://" + ln.Addr().String() + "/metrics"
	d.mu.Unlock()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		d.log.WithError(err).Error("metrics endpoint stopped")
	}
}

// statusCollector turns a Status snapshot into gauges at scrape time.
type statusCollector struct{ d *Daemon }

var (
	descUp       = prometheus.NewDesc("selfprotect_armed", "1 when every chosen source reads events.", nil, nil)
	descDegraded = prometheus.NewDesc("selfprotect_degraded", "1 when something leaves the daemon partly blind (see status).", nil, nil)
	descPaused   = prometheus.NewDesc("selfprotect_paused", "1 while isolation is paused by an operator.", nil, nil)
	descStorm    = prometheus.NewDesc("selfprotect_storm", "1 during a corrected-error storm.", nil, nil)
	descDryRun   = prometheus.NewDesc("selfprotect_dry_run", "1 in dry-run mode.", nil, nil)
	descSource   = prometheus.NewDesc("selfprotect_source_up", "1 when the event source is armed, 0 otherwise.", []string{"source"}, nil)
	// descSourceState is 1 for the state each source is in.
	descSourceState = prometheus.NewDesc("selfprotect_source_state", "1 for the state the event source is in (armed, standby, unavailable, broken).", []string{"source", "state"}, nil)
	descCases       = prometheus.NewDesc("selfprotect_cases", "Cases by diagnosis and state.", []string{"diagnosis", "state"}, nil)
	descRecords     = prometheus.NewDesc("selfprotect_records_total", "Records by fate: received, undecodable, trace_missed, not_stored.", []string{"fate"}, nil)
	descFirst       = prometheus.NewDesc("selfprotect_memory_errors_first_total", "Memory errors by the path that reported them first (the one they are counted from).", []string{"path"}, nil)
	descMerged      = prometheus.NewDesc("selfprotect_memory_errors_merged_total", "Memory errors reported again by a second path and counted once, plus EDAC counter errors an mc_event had delivered.", []string{"path"}, nil)
	descPath        = prometheus.NewDesc("selfprotect_count_path_info", "Which path each class of error is counted from on this machine (see status for why).", []string{"class", "from"}, nil)
	descCPUs        = prometheus.NewDesc("selfprotect_cpus", "CPUs present and online.", []string{"state"}, nil)
	descStoreErr    = prometheus.NewDesc("selfprotect_store_write_failures_total", "Store writes that failed (each retried record counts again).", nil, nil)
	descHeld        = prometheus.NewDesc("selfprotect_store_held_records", "Records kept in memory until the store takes them again.", nil, nil)
	descPages       = prometheus.NewDesc("selfprotect_pages_retired", "Pages retired (HardwareCorrupted), by whom, and the budget's limit.", []string{"by"}, nil)
)

func (statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descDegraded, descPaused, descStorm, descDryRun, descSource, descSourceState, descCases, descRecords, descFirst, descMerged, descPath, descCPUs, descPages, descStoreErr, descHeld} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.d.status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descUp, b2f(s.Armed))
	gauge(descDegraded, b2f(s.Degraded))
	gauge(descPaused, b2f(s.Paused))
	gauge(descStorm, b2f(s.Storming))
	gauge(descDryRun, b2f(s.Mode == policy.ModeDryRun))
	for _, src := range s.Sources {
		gauge(descSource, b2f(src.State == SourceArmed), src.Name)
		for _, st := range sourceStates {
			gauge(descSourceState, b2f(src.State == st), src.Name, string(st))
		}
	}
	for k, n := range c.d.cases.countsByDiagnosis() {
		gauge(descCases, float64(n), k[0], k[1])
	}
	counter(descStoreErr, float64(s.StoreFailures))
	gauge(descHeld, float64(s.HeldWrites))
	e := s.Events
	for fate, n := range map[string]uint64{"received": e.Received, "undecodable": e.Undecodable,
		"trace_missed": e.TraceMissed, "not_stored": e.NotStored} {
		counter(descRecords, float64(n), fate)
	}
	for path, n := range e.FirstBy {
		counter(descFirst, float64(n), path)
	}
	cs := c.d.stage.Stats()
	for path, n := range cs.Merged {
		counter(descMerged, float64(n), path)
	}
	counter(descMerged, float64(cs.EDACCredited), "edac_counter")
	for _, p := range s.CountPaths {
		gauge(descPath, 1, p.Class, p.From)
	}
	gauge(descCPUs, float64(s.Budgets.CPUsPresent), "present")
	gauge(descCPUs, float64(s.Budgets.CPUsOnline), "online")
	gauge(descPages, float64(s.Budgets.PagesRetired), "anyone")
	gauge(descPages, float64(s.Budgets.PagesRetiredByUs), "selfprotect")
	gauge(descPages, float64(s.Budgets.PagesRetiredLimit), "limit")
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
