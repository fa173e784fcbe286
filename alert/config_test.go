package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	yaml "go.yaml.in/yaml/v3"
)

func loadTestdata(t *testing.T, name string) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return Parse(name, data)
}

func TestParseGood(t *testing.T) {
	cfg, err := loadTestdata(t, "conf.good.yml")
	require.NoError(t, err)
	require.Equal(t, "db-7.example.net", cfg.Host)
	require.Equal(t, 500, cfg.Outbox.MaxPending)
	require.Equal(t, 5*time.Second, cfg.Outbox.InitialBackoff)
	require.Equal(t, DefaultKeepSent, cfg.Outbox.KeepSent, "a key left out keeps its default")
	require.Len(t, cfg.Notifiers, 6)

	mail := cfg.Notifiers[0]
	require.Equal(t, TLSStartTLS, mail.Email.TLS, "STARTTLS is the default")
	require.Equal(t, Secret("hunter2-mail-password"), mail.Email.Password)
	require.Equal(t, []string{"ops@example.net", "hw@example.net"}, mail.Email.To)
	require.Equal(t, Route{MinSeverity: SeverityWarning}, mail.Route())
	require.Equal(t, DefaultTimeout, mail.Timeout)

	nms := cfg.Notifiers[1].SNMP
	require.Equal(t, "nms.example.net:162", nms.Target, "the SNMP trap port is the default")
	require.Equal(t, "SHA", nms.AuthProtocol)
	require.Equal(t, "AES", nms.PrivProtocol)
	require.Equal(t, DefaultRootOID, nms.RootOID)
	require.Equal(t, []Transition{Isolated, IsolationFailed, BudgetExhausted}, cfg.Notifiers[1].Transitions)

	require.Equal(t, DefaultRepost, cfg.Notifiers[2].Alertmanager.RepostInterval)
	require.Equal(t, DefaultExecConcurrency, cfg.Notifiers[4].Concurrency)
	require.Equal(t, 10*time.Second, cfg.Notifiers[4].Timeout)
	require.Equal(t, Secret("123456"), cfg.Notifiers[5].SNMP.Community, "a numeric community is a string")
	require.Equal(t, 17, cfg.Line("alerts.notifiers[0].email.password"))
}

// url_file: the URL is the file's content without the white space around
// it, and the file's name stays for the echo.
func TestParseURLFile(t *testing.T) {
	cfg, err := loadTestdata(t, "conf.url-file.yml")
	require.NoError(t, err)
	chat := cfg.Notifiers[0].Webhook
	require.Equal(t, "https://chat.example.net/v1/spaces/AAAA/messages?key=hunter2-chat-key&token=hunter2-chat-token",
		chat.URL.Endpoint().Reveal())
	require.Equal(t, "testdata/hook.url", chat.URLFile)
	require.Equal(t, "http://127.0.0.1:9093/am/", cfg.Notifiers[1].Alertmanager.URL.Endpoint().Reveal())

	// A relative url_file is found next to the configuration file,
	// wherever the command runs.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "slack.url"), []byte("https://hooks.example.net/services/T0/B0/hunter2-x\n"), 0o600))
	path := filepath.Join(dir, "selfprotect.yaml")
	require.NoError(t, os.WriteFile(path, []byte("alerts:\n  notifiers:\n    - name: slack\n      type: webhook\n"+
		"      webhook: {url_file: slack.url}\n"), 0o600))
	cfg, err = Load(path)
	require.NoError(t, err)
	require.Equal(t, "https://hooks.example.net/services/T0/B0/hunter2-x", cfg.Notifiers[0].Webhook.URL.Endpoint().Reveal())
	require.Equal(t, filepath.Join(dir, "slack.url"), cfg.Notifiers[0].Webhook.URLFile, "the echo names the file read")
}

// A relative ca_file is found next to the configuration file, like
// url_file, not in the working directory (/ under systemd); the echo
// shows the path that is read.
func TestParseCAFileFromConfigDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "selfprotect.yaml")
	for _, tc := range []struct {
		name, settings string
		caFile         func(*Config) string
	}{
		{"email", "email: {host: smtp.example.net, from: a@example.net, to: [b@example.net], ca_file: %s}",
			func(c *Config) string { return c.Notifiers[0].Email.CAFile }},
		{"webhook", "webhook: {url: \"https://hooks.example.net/x\", ca_file: %s}",
			func(c *Config) string { return c.Notifiers[0].Webhook.CAFile }},
		{"alertmanager", "alertmanager: {url: \"https://am.example.net\", ca_file: %s}",
			func(c *Config) string { return c.Notifiers[0].Alertmanager.CAFile }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range []struct{ given, want string }{
				{"ca.pem", filepath.Join(dir, "ca.pem")},
				{"pki/../ca.pem", filepath.Join(dir, "ca.pem")},
				{"/etc/ssl/private-ca.pem", "/etc/ssl/private-ca.pem"},
				{`""`, ""},
			} {
				yml := fmt.Sprintf("alerts:\n  notifiers:\n    - name: n\n      type: %s\n      %s\n", tc.name, fmt.Sprintf(tc.settings, f.given))
				require.NoError(t, os.WriteFile(path, []byte(yml), 0o600))
				cfg, err := Load(path)
				require.NoError(t, err, yml)
				require.Equal(t, f.want, tc.caFile(cfg), f.given)
				echo, err := cfg.YAML()
				require.NoError(t, err)
				if f.want == "" {
					require.NotContains(t, string(echo), "ca_file: /", "no CA file, no path")
					continue
				}
				require.Contains(t, string(echo), "ca_file: "+f.want+"\n", "the echo names the file read")
				asJSON, err := json.Marshal(cfg)
				require.NoError(t, err)
				require.Contains(t, string(asJSON), `"ca_file":"`+f.want+`"`)
			}
		})
	}
}

// The echo shows a hook's URL without its path or query, an
// Alertmanager's with its path, and for a URL read from url_file only the
// file's name.
func TestEchoedURLs(t *testing.T) {
	cfg, err := loadTestdata(t, "conf.good.yml")
	require.NoError(t, err)
	fromFiles, err := loadTestdata(t, "conf.url-file.yml")
	require.NoError(t, err)
	out, err := cfg.YAML()
	require.NoError(t, err)
	out2, err := fromFiles.YAML()
	require.NoError(t, err)
	for _, want := range []string{
		"url: http://127.0.0.1:9093/alertmanager?...\n",
		"url: https://hooks.example.net/...\n",
		"url: \"\"\n            url_file: testdata/hook.url\n",
		"url: \"\"\n            url_file: testdata/am.url\n",
	} {
		require.Contains(t, string(out)+string(out2), want)
	}
	require.Equal(t, "https://hooks.example.net/...", cfg.Notifiers[3].Webhook.ShownURL())
	require.Equal(t, "http://127.0.0.1:9093/alertmanager?...", cfg.Notifiers[2].Alertmanager.ShownURL())
	require.Equal(t, "", fromFiles.Notifiers[0].Webhook.ShownURL())
	require.Equal(t, "", fromFiles.Notifiers[1].Alertmanager.ShownURL())
}

func TestParseWithoutSection(t *testing.T) {
	cfg, err := loadTestdata(t, "conf.none.yml")
	require.NoError(t, err)
	require.Empty(t, cfg.Notifiers)
	require.Equal(t, DefaultMaxPending, cfg.Outbox.MaxPending)
}

// TestParseBad runs every testdata/conf.bad-*.yml and compares the errors
// with the .err file next to it, line for line.
func TestParseBad(t *testing.T) {
	files, err := filepath.Glob("testdata/conf.bad-*.yml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".yml") + ".err")
			require.NoError(t, err)
			_, err = loadTestdata(t, name)
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalid), "every config error matches ErrInvalid: %v", err)
			require.Equal(t, strings.TrimSpace(string(want)), err.Error())
		})
	}
}

// TestSecretsNeverShown proves that no way of printing a configuration, or
// an error about it, reveals a secret: every secret in the testdata starts
// with "hunter2".
func TestSecretsNeverShown(t *testing.T) {
	cfg, err := loadTestdata(t, "conf.good.yml")
	require.NoError(t, err)
	require.Equal(t, "hunter2-auth-key", cfg.Notifiers[1].SNMP.AuthKey.Reveal(), "the secret was read")

	asJSON, err := json.Marshal(cfg)
	require.NoError(t, err)
	asYAML, err := cfg.YAML()
	require.NoError(t, err)
	viaYAMLLib, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	renderings := map[string]string{
		"String": cfg.String(), "JSON": string(asJSON), "YAML": string(asYAML), "yaml.Marshal": string(viaYAMLLib),
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", *cfg), "%#v": fmt.Sprintf("%#v", *cfg.Notifiers[0].Email),
		"%s": fmt.Sprintf("pw=%s", cfg.Notifiers[0].Email.Password), "%q": fmt.Sprintf("%q", cfg.Notifiers[0].Email.Password),
		"%x":           fmt.Sprintf("%x", cfg.Notifiers[0].Email.Password),
		"notifier %+v": fmt.Sprintf("%+v", cfg.Notifiers), "snmp %#v": fmt.Sprintf("%#v", cfg.Notifiers[1].SNMP),
		"am %+v": fmt.Sprintf("%+v", *cfg.Notifiers[2].Alertmanager), "hook %#v": fmt.Sprintf("%#v", *cfg.Notifiers[3].Webhook),
	}
	fromFiles, err := loadTestdata(t, "conf.url-file.yml")
	require.NoError(t, err)
	fromFilesYAML, err := fromFiles.YAML()
	require.NoError(t, err)
	fromFilesJSON, err := json.Marshal(fromFiles)
	require.NoError(t, err)
	renderings["url_file YAML"], renderings["url_file JSON"] = string(fromFilesYAML), string(fromFilesJSON)
	for _, bad := range []string{"conf.bad-secret-type.yml", "conf.bad-url.yml", "conf.bad-url-file.yml", "conf.bad-keys.yml"} {
		_, err := loadTestdata(t, bad)
		require.Error(t, err)
		renderings["error "+bad] = err.Error()
	}
	for how, s := range renderings {
		require.NotContains(t, s, "hunter2", "%s reveals a secret:\n%s", how, s)
	}
	require.Contains(t, renderings["YAML"], "password: <secret>", "a set secret shows that it is set")
	require.Contains(t, renderings["JSON"], `"auth_key":"\u003csecret\u003e"`)
	require.Contains(t, renderings["%#v"], `alert.Secret("<secret>")`)
}

func TestYAMLRoundTripKeepsStructure(t *testing.T) {
	cfg, err := loadTestdata(t, "conf.good.yml")
	require.NoError(t, err)
	out, err := cfg.YAML()
	require.NoError(t, err)
	// The rendering parses back (with secrets now literally "<secret>").
	again, err := Parse("rendered", out)
	require.NoError(t, err, "%s", out)
	require.Equal(t, len(cfg.Notifiers), len(again.Notifiers))
	require.Equal(t, cfg.Notifiers[1].SNMP.Target, again.Notifiers[1].SNMP.Target)
	require.Equal(t, Secret("<secret>"), again.Notifiers[0].Email.Password)

	fromFiles, err := loadTestdata(t, "conf.url-file.yml")
	require.NoError(t, err)
	out, err = fromFiles.YAML()
	require.NoError(t, err)
	again, err = Parse("rendered", out)
	require.NoError(t, err, "%s", out)
	require.Equal(t, fromFiles.Notifiers[0].Webhook.URL, again.Notifiers[0].Webhook.URL, "url_file is echoed, and read again")
}

// A url_file or ca_file naming a FIFO is refused at once, without waiting
// for a writer: the configuration loads on the daemon's main loop at
// every SIGHUP, and a read that waits would stop the intake with it.
func TestConfigFilesNeverWait(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	path := filepath.Join(dir, "selfprotect.yaml")
	for _, tc := range []struct{ name, notifier, want string }{
		{"url_file", "webhook: {url_file: pipe}", "alerts.notifiers[0].webhook.url_file: reading the URL: " + fifo + " is a FIFO"},
		{"ca_file", "webhook: {url: \"https://hooks.example.net/x\", ca_file: pipe}", fifo + " is a FIFO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(path, []byte("alerts:\n  notifiers:\n    - name: hook\n      type: webhook\n      "+tc.notifier+"\n"), 0o600))
			done := make(chan error, 1)
			go func() {
				cfg, err := Load(path)
				if err == nil {
					// The CA file is read when the notifier is built.
					_, err = TLSConfig(cfg.Notifiers[0].Webhook.CAFile, "")
				}
				done <- err
			}()
			select {
			case err := <-done:
				require.ErrorContains(t, err, tc.want)
			case <-time.After(10 * time.Second):
				t.Fatal("reading a FIFO named by the configuration waited for a writer")
			}
		})
	}
}
