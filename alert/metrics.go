package alert

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NotifierStatus is one notifier's line in `status` and /metrics: the
// durable queue from the store, the send figures of this run from the
// dispatcher.
// Its JSON is part of `status --json` (doc/json-schema.json pins it).
type NotifierStatus struct {
	Name        string    `json:"name"`
	Type        string    `json:"type"`
	Pending     int       `json:"pending"` // undelivered, in the store
	Dead        int       `json:"dead"`    // given up (retrying could not help), kept for inspection
	Dropped     int64     `json:"dropped"` // refused by a full queue, ever
	InFlight    int       `json:"in_flight"`
	Sent        int64     `json:"sent"`   // this run
	Failed      int64     `json:"failed"` // failed attempts this run
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Snapshot reads every configured notifier's status. d may be nil (no
// dispatcher running: `status` from the store alone).
func Snapshot(s Persistence, d *Dispatcher, ns []NamedNotifier) ([]NotifierStatus, error) {
	type queue struct {
		pending, dead int
		dropped       int64
		lastSent      time.Time
		lastError     string
	}
	byName := map[string]queue{}
	err := s.EachQueue(func(notifier string, pending, dead int, dropped int64, lastSent time.Time, lastError string) {
		byName[notifier] = queue{pending, dead, dropped, lastSent, lastError}
	})
	if err != nil {
		return nil, err
	}
	var stats map[string]NotifierStats
	if d != nil {
		stats = d.Stats()
	}
	out := make([]NotifierStatus, 0, len(ns))
	for _, n := range ns {
		q, st := byName[n.Name], stats[n.Name]
		ns := NotifierStatus{
			Name: n.Name, Type: n.Type, Pending: q.pending, Dead: q.dead, Dropped: q.dropped,
			InFlight: st.InFlight, Sent: st.Sent, Failed: st.Failed,
			LastSuccess: st.LastSuccess, LastError: st.LastError, LastErrorAt: st.LastErrorAt,
		}
		if ns.LastSuccess.IsZero() {
			ns.LastSuccess = q.lastSent // from an earlier run
		}
		if ns.LastError == "" {
			ns.LastError = q.lastError
		}
		out = append(out, ns)
	}
	return out, nil
}

// Collector exports Snapshot to Prometheus, read when scraped.
type Collector struct {
	Store      Persistence
	Dispatcher *Dispatcher
	Notifiers  []NamedNotifier
}

var (
	descPending = prometheus.NewDesc("selfprotect_alert_queue_depth",
		"Alerts waiting in the durable outbox, by notifier.", []string{"notifier"}, nil)
	descDead = prometheus.NewDesc("selfprotect_alert_dead",
		"Deliveries given up because retrying could not help, by notifier.", []string{"notifier"}, nil)
	descDropped = prometheus.NewDesc("selfprotect_alert_dropped_total",
		"Alerts dropped because the notifier's outbox was full.", []string{"notifier"}, nil)
	descInFlight = prometheus.NewDesc("selfprotect_alert_in_flight",
		"Sends in progress, by notifier.", []string{"notifier"}, nil)
	descSent = prometheus.NewDesc("selfprotect_alert_sent_total",
		"Alerts delivered since the daemon started, by notifier.", []string{"notifier"}, nil)
	descFailed = prometheus.NewDesc("selfprotect_alert_failures_total",
		"Failed delivery attempts since the daemon started, by notifier.", []string{"notifier"}, nil)
	descLastSuccess = prometheus.NewDesc("selfprotect_alert_last_success_timestamp_seconds",
		"When the notifier last delivered an alert (0: never).", []string{"notifier"}, nil)
	descLastError = prometheus.NewDesc("selfprotect_alert_last_error_timestamp_seconds",
		"When a delivery through the notifier last failed in this run (0: never).", []string{"notifier"}, nil)
	descScrapeError = prometheus.NewDesc("selfprotect_alert_outbox_readable",
		"1 when the outbox could be read for this scrape, 0 when not.", nil, nil)
)

func (c Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPending, descDead, descDropped, descInFlight, descSent,
		descFailed, descLastSuccess, descLastError, descScrapeError} {
		ch <- d
	}
}

func (c Collector) Collect(ch chan<- prometheus.Metric) {
	snap, err := Snapshot(c.Store, c.Dispatcher, c.Notifiers)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descScrapeError, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descScrapeError, prometheus.GaugeValue, 1)
	unix := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	for _, n := range snap {
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(n.Pending), n.Name)
		ch <- prometheus.MustNewConstMetric(descDead, prometheus.GaugeValue, float64(n.Dead), n.Name)
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(n.Dropped), n.Name)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(n.InFlight), n.Name)
		ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(n.Sent), n.Name)
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(n.Failed), n.Name)
		ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, unix(n.LastSuccess), n.Name)
		ch <- prometheus.MustNewConstMetric(descLastError, prometheus.GaugeValue, unix(n.LastErrorAt), n.Name)
	}
}
