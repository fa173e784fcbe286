package notifiers

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/alert/alertmanager"
	"github.com/selfprotect/selfprotect/alert/email"
	"github.com/selfprotect/selfprotect/alert/exec"
	"github.com/selfprotect/selfprotect/alert/snmp"
	"github.com/selfprotect/selfprotect/alert/webhook"
	"github.com/selfprotect/selfprotect/internal/peertest"
)

func TestBuildEveryType(t *testing.T) {
	cfg, err := alert.Load("../testdata/conf.good.yml")
	require.NoError(t, err)
	// The exec entry names a hook that does not exist on this machine.
	hook := filepath.Join(t.TempDir(), "on-alert")
	require.NoError(t, os.WriteFile(hook, []byte("#!/bin/sh\ncat > /dev/null\n"), 0o755))
	cfg.Notifiers[4].Exec.Command = []string{hook}

	ns, err := Build(cfg)
	require.NoError(t, err)
	require.Len(t, ns, 6)
	for i, want := range []any{&email.Notifier{}, &snmp.Notifier{}, &alertmanager.Notifier{}, &webhook.Notifier{}, &exec.Notifier{}, &snmp.Notifier{}} {
		require.IsType(t, want, ns[i].Notifier, ns[i].Name)
		require.Equal(t, cfg.Notifiers[i].Name, ns[i].Name)
		require.Equal(t, cfg.Notifiers[i].Timeout, ns[i].Timeout)
	}
	require.Equal(t, alert.Route{MinSeverity: alert.SeverityWarning}, ns[0].Route)
	_, background := ns[2].Notifier.(alert.Background)
	require.True(t, background, "alertmanager re-posts in the background")

	// The hook runs and gets the test alert.
	retry, err := ns[4].Notifier.Notify(context.Background(), alert.TestAlert(cfg.HostName(), time.Now()))
	require.NoError(t, err)
	require.False(t, retry)
}

func TestBuildNamesTheBrokenEntry(t *testing.T) {
	cfg, err := alert.Load("../testdata/conf.good.yml")
	require.NoError(t, err)
	cfg.Notifiers[0].Email.CAFile = "/nonexistent/ca.pem"
	_, err = Build(cfg)
	require.ErrorContains(t, err, "conf.good.yml:10: alerts.notifiers[0] (ops-mail): email: reading CA file")
}

// A relative ca_file is read next to the configuration file: this test's
// working directory holds no ca.pem, yet every TLS notifier builds, and a
// CA file that is missing is named by the path that was tried.
func TestBuildReadsCAFileNextToConfig(t *testing.T) {
	dir := t.TempDir()
	peertest.NewPKI(t, dir) // writes dir/ca.pem
	_, err := os.Stat("ca.pem")
	require.ErrorIs(t, err, os.ErrNotExist, "the test needs a working directory without ca.pem")
	path := filepath.Join(dir, "selfprotect.yaml")
	section := func(ca string) string {
		return "alerts:\n  notifiers:\n" +
			"    - {name: mail, type: email, email: {host: 127.0.0.1, from: a@example.net, to: [b@example.net], ca_file: " + ca + "}}\n" +
			"    - {name: hook, type: webhook, webhook: {url: \"https://127.0.0.1/x\", ca_file: " + ca + "}}\n" +
			"    - {name: am, type: alertmanager, alertmanager: {url: \"https://127.0.0.1:9093\", ca_file: " + ca + "}}\n"
	}
	require.NoError(t, os.WriteFile(path, []byte(section("ca.pem")), 0o600))
	cfg, err := alert.Load(path)
	require.NoError(t, err)
	ns, err := Build(cfg)
	require.NoError(t, err)
	require.Len(t, ns, 3)

	require.NoError(t, os.WriteFile(path, []byte(section("missing.pem")), 0o600))
	cfg, err = alert.Load(path)
	require.NoError(t, err)
	_, err = Build(cfg)
	require.ErrorContains(t, err, filepath.Join(dir, "missing.pem"))
}

// The hook that is not there is named once, behind where it is
// configured: no "exec: exec: ...".
func TestBuildMissingHookReadsOnce(t *testing.T) {
	cfg, err := alert.Load("../testdata/conf.good.yml")
	require.NoError(t, err)
	cfg.Notifiers[4].Exec.Command = []string{"/nonexistent/on-alert"}
	_, err = Build(cfg)
	require.Error(t, err)
	require.Regexp(t, `^\S+conf\.good\.yml:\d+: alerts\.notifiers\[4\] \(\S+\): hook /nonexistent/on-alert: no such file or directory$`, err.Error())
}
