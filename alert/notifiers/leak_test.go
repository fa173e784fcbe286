package notifiers

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/store"
)

// A failed delivery is written to the outbox row, the dispatcher's log
// and the status snapshot: none of them holds a hook's token, whether it
// sits in the URL's path (Slack, Discord) or its query, given inline or
// read from url_file.
func TestDeliveryErrorsHideHookTokens(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	down := closed.URL
	closed.Close()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chat.url"),
		[]byte(down+"/v1/spaces/AAAA/messages?key=hunter2-chat-key-0123456789&token=hunter2-chat-token\n"), 0o600))
	config := filepath.Join(dir, "selfprotect.yaml")
	require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(`alerts:
  outbox: {initial_backoff: 1h, max_backoff: 1h}
  notifiers:
    - name: slack
      type: webhook
      webhook: {url: "%[1]s/services/T0SELFPROT/B0SELFPROT/hunter2hunter2hunter2xx"}
    - name: chat
      type: webhook
      webhook: {url_file: chat.url}
    - name: am
      type: alertmanager
      alertmanager: {url: "%[1]s/am-prefix?token=hunter2-am-query"}
`, down)), 0o600))
	cfg, err := alert.Load(config)
	require.NoError(t, err)
	ns, err := Build(cfg)
	require.NoError(t, err)

	s, err := store.Open(filepath.Join(dir, "selfprotect.db"))
	require.NoError(t, err)
	defer s.Close()
	var logged bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logged)
	d, err := alert.NewDispatcher(alert.StoreQueue{Store: s}, alert.DispatcherConfig{
		Notifiers: ns, InitialBackoff: cfg.Outbox.InitialBackoff, MaxBackoff: cfg.Outbox.MaxBackoff, Log: log,
	})
	require.NoError(t, err)
	o := &alert.Outbox{Store: s, Notifiers: ns, MaxPending: cfg.Outbox.MaxPending, Host: "db-7", Kick: d.Kick}
	_, err = o.Raise(time.Now(), alert.TestAlert("db-7", time.Now()))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var pending []store.Delivery
	require.Eventually(t, func() bool {
		pending, err = s.Deliveries(store.DeliveryPending)
		require.NoError(t, err)
		failed := 0
		for _, p := range pending {
			if p.Attempts > 0 {
				failed++
			}
		}
		return failed == len(ns)
	}, 30*time.Second, 20*time.Millisecond, "every delivery fails once")
	cancel()
	require.NoError(t, <-done)

	status, err := alert.Snapshot(s, d, ns)
	require.NoError(t, err)
	shown := map[string]string{}
	for _, p := range pending {
		shown["outbox row "+p.Notifier] = p.LastError
	}
	for _, st := range status {
		shown["status "+st.Name] = st.LastError
	}
	shown["log"] = logged.String()
	for where, text := range shown {
		require.Contains(t, text, "connection refused", where)
		require.NotContains(t, text, "hunter2", "%s holds a token:\n%s", where, text)
	}
	require.Contains(t, shown["outbox row slack"], "posting to "+down+"/...: ")
	require.Contains(t, shown["outbox row chat"], "posting to "+down+"/...?...: ")
	require.Contains(t, shown["outbox row am"], "posting to "+down+"/am-prefix/api/v2/alerts?...: ")
}
