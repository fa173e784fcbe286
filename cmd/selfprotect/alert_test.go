package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	yaml "go.yaml.in/yaml/v3"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/jsonout"
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
      webhook: {url: %s/services/T0SELF/B0PROT/hunter2-path-token}
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
	require.Regexp(t, `(?m)^broken\s+webhook\s+FAILED after .*: posting to http://127\.0\.0\.1:\d+/\.\.\.: 503 Service Unavailable: maintenance \(the daemon would retry\)$`, out)
	require.NotContains(t, out, "hunter2", "neither the bearer token nor the token in the hook's path prints")

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
      alertmanager: {url: "http://127.0.0.1:9093/am-prefix", bearer_token: hunter2-token}
    - name: slack
      type: webhook
      webhook: {url: "https://hooks.slack.com/services/T0SELFPROT/B0SELFPROT/hunter2hunter2hunter2xx"}
    - name: discord
      type: webhook
      webhook: {url_file: discord.url}
`), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(cfg), "discord.url"),
		[]byte("https://discord.com/api/webhooks/112233445566778899/hunter2-discord-token\n"), 0o600))
	var out bytes.Buffer
	root := newRootCommand(&out, &bytes.Buffer{})
	root.SetArgs([]string{"alert", "config", "--config", cfg})
	require.NoError(t, root.Execute())
	require.Contains(t, out.String(), "bearer_token: <secret>")
	require.Contains(t, out.String(), "repost_interval: 1m0s", "defaults are filled in")
	require.Contains(t, out.String(), "url: http://127.0.0.1:9093/am-prefix\n", "an Alertmanager's path prefix shows")
	require.Contains(t, out.String(), "url: https://hooks.slack.com/...\n", "a hook's path does not")
	require.Contains(t, out.String(), "url_file: "+filepath.Join(filepath.Dir(cfg), "discord.url")+"\n")
	require.NotContains(t, out.String(), "discord.com", "a URL read from url_file stays in its file")
	require.NotContains(t, out.String(), "hunter2")
}

// `alert config --json` shows what the YAML shows, key for key and value
// for value (a duration key x is x_seconds, in seconds), so a key the
// JSON lacks fails, and a secret is masked exactly as the YAML masks it:
// "<secret>" when set, "" when not, its value nowhere.
func TestAlertConfigJSON(t *testing.T) {
	secrets := []string{"mail-pw-s3cr3t", "auth-key-s3cr3t", "priv-key-s3cr3t", "community-s3cr3t",
		"am-token-s3cr3t", "hook-token-s3cr3t"}
	// Tokens in a hook's URL: its path, its query, a url_file's content.
	// Not shown as "<secret>": the URL shows without them.
	urlTokens := []string{"hook-path-s3cr3t", "hook-s3cr3t", "chat-key-s3cr3t", "chat-token-s3cr3t", "s3cr3t-path"}
	for _, tt := range []struct {
		name, file string
		notifiers  int
		masked     int // secrets set, each "<secret>"
	}{
		{"every notifier type", "testdata/alert-config/all.yaml", 7, len(secrets)},
		{"no notifiers", "testdata/alert-config/none.yaml", 0, 0},
		{"one webhook", "testdata/check-config/valid.yaml", 1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text, stderr, err := runCLI(t, "alert", "config", "--config", tt.file)
			require.NoError(t, err, stderr)
			out, stderr, err := runCLI(t, "alert", "config", "--config", tt.file, "--json")
			require.NoError(t, err, stderr)
			for _, s := range append(append(secrets, "s3cr3t-t0ken"), urlTokens...) {
				require.NotContains(t, out, s, "a secret never prints")
				require.NotContains(t, text, s, "a secret never prints")
			}
			require.Equal(t, tt.masked, strings.Count(out, `"<secret>"`), out)

			var got jsonout.AlertConfig
			require.NoError(t, json.Unmarshal([]byte(out), &got))
			require.Equal(t, tt.file, got.File)
			require.Len(t, got.Notifiers, tt.notifiers)

			var yamlDoc struct {
				Alerts map[string]any `yaml:"alerts"`
			}
			require.NoError(t, yaml.Unmarshal([]byte(text), &yamlDoc))
			dec := json.NewDecoder(strings.NewReader(out))
			dec.UseNumber()
			var jsonDoc map[string]any
			require.NoError(t, dec.Decode(&jsonDoc))
			delete(jsonDoc, "file") // the text output's header line
			want, have := map[string]string{}, map[string]string{}
			flattenConfig(t, "alerts", yamlDoc.Alerts, want)
			flattenConfig(t, "alerts", jsonDoc, have)
			require.Equal(t, want, have, "the JSON shows what the YAML shows")
		})
	}

	t.Run("invalid file", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "selfprotect.yaml")
		require.NoError(t, os.WriteFile(cfg, []byte("alerts:\n  notifiers:\n    - name: x\n      type: pager\n"), 0o600))
		out, _, err := runCLI(t, "alert", "config", "--config", cfg, "--json")
		require.ErrorContains(t, err, cfg+":4: alerts.notifiers[0].type")
		require.Empty(t, out, "no JSON for a file that does not load")
	})
}

// flattenConfig writes v's leaves as path=value; a JSON key x_seconds
// becomes x with the value as a Go duration ("1m0s"), as the YAML prints it.
func flattenConfig(t *testing.T, path string, v any, out map[string]string) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 {
			out[path] = "{}"
		}
		for k, e := range v {
			if base, ok := strings.CutSuffix(k, "_seconds"); ok {
				n, isNum := e.(json.Number)
				require.True(t, isNum, "%s.%s: want seconds, got %v", path, k, e)
				f, err := n.Float64()
				require.NoError(t, err)
				k, e = base, time.Duration(math.Round(f*float64(time.Second))).String()
			}
			flattenConfig(t, path+"."+k, e, out)
		}
	case []any:
		if len(v) == 0 {
			out[path] = "[]"
		}
		for i, e := range v {
			flattenConfig(t, fmt.Sprintf("%s[%d]", path, i), e, out)
		}
	default:
		out[path] = fmt.Sprint(v)
	}
}
