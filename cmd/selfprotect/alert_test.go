package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
)

func TestAlertTestCLI(t *testing.T) {
	dir := t.TempDir()
	got := filepath.Join(dir, "hook.json")
	hook := filepath.Join(dir, "hook.sh")
	require.NoError(t, os.WriteFile(hook, []byte("#!/bin/sh\ncat > "+got+"\n"), 0o755))
	var posted []byte
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posted, _ = io.ReadAll(r.Body) }))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	cfg := filepath.Join(dir, "selfprotect.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`mode: dry-run
alerts:
  host: test-host
  notifiers:
    - name: script
      type: exec
      exec: {command: [%s]}
    - name: hook
      type: webhook
      min_severity: critical
      webhook: {url: %s, bearer_token: hunter2-token}
    - name: broken
      type: webhook
      webhook: {url: %s}
`, hook, ok.URL, down.URL)), 0o600))

	run := func(args ...string) (string, error) {
		var out, errw bytes.Buffer
		root := newRootCommand(&out, &errw)
		root.SetArgs(append([]string{"alert", "test", "--config", cfg}, args...))
		err := root.Execute()
		return out.String(), err
	}

	out, err := run()
	require.ErrorIs(t, err, errAlertTestFailed, out)
	require.Regexp(t, `(?m)^script\s+exec\s+ok `, out)
	require.Regexp(t, `(?m)^hook\s+webhook\s+ok `, out, "a test alert passes every route")
	require.Regexp(t, `(?m)^broken\s+webhook\s+FAILED after .*503 Service Unavailable: maintenance \(the daemon would retry\)$`, out)
	require.NotContains(t, out, "hunter2")

	var a alert.Alert
	data, err := os.ReadFile(got)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &a))
	require.Equal(t, alert.Test, a.Transition)
	require.Equal(t, "test-host", a.Host)
	require.Contains(t, string(posted), a.ID, "both notifiers got the same alert")

	out, err = run("script")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^script\s+exec\s+ok `, out)
	require.NotContains(t, out, "hook")

	_, err = run("nosuch")
	require.ErrorContains(t, err, `no notifier "nosuch" in `+cfg+" (configured: script, hook, broken)")
}

func TestAlertTestCLIBadConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "selfprotect.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("alerts:\n  notifiers:\n    - name: x\n      type: pager\n"), 0o600))
	root := newRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
	root.SetArgs([]string{"alert", "test", "--config", cfg})
	err := root.Execute()
	require.ErrorContains(t, err, cfg+":4: alerts.notifiers[0].type: want one of email, snmp, alertmanager, webhook, exec, got \"pager\"")

	require.NoError(t, os.WriteFile(cfg, []byte("mode: enforce\n"), 0o600))
	root = newRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
	root.SetArgs([]string{"alert", "test", "--config", cfg})
	require.ErrorContains(t, root.Execute(), "no notifiers configured")
}

func TestAlertConfigCLI(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "selfprotect.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`alerts:
  notifiers:
    - name: am
      type: alertmanager
      alertmanager: {url: "http://127.0.0.1:9093", bearer_token: hunter2-token}
`), 0o600))
	var out bytes.Buffer
	root := newRootCommand(&out, &bytes.Buffer{})
	root.SetArgs([]string{"alert", "config", "--config", cfg})
	require.NoError(t, root.Execute())
	require.Contains(t, out.String(), "bearer_token: <secret>")
	require.Contains(t, out.String(), "repost_interval: 1m0s", "defaults are filled in")
	require.NotContains(t, out.String(), "hunter2")
}
