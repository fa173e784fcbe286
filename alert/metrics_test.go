package alert

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestCollector(t *testing.T) {
	s := openStore(t)
	ns := []NamedNotifier{named("mail", newRecorder(false), 1), named("nms", newRecorder(false), 1)}
	ns[0].Type, ns[1].Type = TypeEmail, TypeSNMP
	o := &Outbox{Store: s, Notifiers: ns, MaxPending: 2, Host: "h"}
	_, err := o.Raise(t0, testAlert(1, Isolated), testAlert(2, Isolated), testAlert(3, Isolated))
	require.NoError(t, err)

	// One delivery for mail went out, one nms attempt failed.
	q := StoreQueue{s}
	due, err := q.Due(t0, "mail", 1)
	require.NoError(t, err)
	require.NoError(t, q.Ack(due[0].ID, t0.Add(time.Second)))
	due, err = q.Due(t0, "nms", 1)
	require.NoError(t, err)
	require.NoError(t, q.Fail(due[0].ID, t0.Add(2*time.Second), t0.Add(time.Minute), "connection refused", false))

	snap, err := Snapshot(s, nil, ns)
	require.NoError(t, err)
	require.Equal(t, []NotifierStatus{
		// Each queue overflowed, and each overflow alert goes to both:
		// mail has one isolated alert and two overflow alerts left.
		{Name: "mail", Type: TypeEmail, Pending: 3, Dropped: 1, LastSuccess: t0.Add(time.Second)},
		{Name: "nms", Type: TypeSNMP, Pending: 4, Dropped: 1, LastError: "connection refused"},
	}, snap)

	want := `
# HELP selfprotect_alert_dropped_total Alerts dropped because the notifier's outbox was full.
# TYPE selfprotect_alert_dropped_total counter
selfprotect_alert_dropped_total{notifier="mail"} 1
selfprotect_alert_dropped_total{notifier="nms"} 1
# HELP selfprotect_alert_queue_depth Alerts waiting in the durable outbox, by notifier.
# TYPE selfprotect_alert_queue_depth gauge
selfprotect_alert_queue_depth{notifier="mail"} 3
selfprotect_alert_queue_depth{notifier="nms"} 4
# HELP selfprotect_alert_last_success_timestamp_seconds When the notifier last delivered an alert (0: never).
# TYPE selfprotect_alert_last_success_timestamp_seconds gauge
selfprotect_alert_last_success_timestamp_seconds{notifier="mail"} 1.773480414e+09
selfprotect_alert_last_success_timestamp_seconds{notifier="nms"} 0
`
	require.NoError(t, testutil.CollectAndCompare(Collector{Store: s, Notifiers: ns}, strings.NewReader(want),
		"selfprotect_alert_queue_depth", "selfprotect_alert_dropped_total", "selfprotect_alert_last_success_timestamp_seconds"))
	require.NoError(t, s.Close())
	require.NoError(t, testutil.CollectAndCompare(Collector{Store: s, Notifiers: ns}, strings.NewReader(`
# HELP selfprotect_alert_outbox_readable 1 when the outbox could be read for this scrape, 0 when not.
# TYPE selfprotect_alert_outbox_readable gauge
selfprotect_alert_outbox_readable 0
`), "selfprotect_alert_outbox_readable"))
}
