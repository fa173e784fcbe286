package notifiers

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/internal/peertest"
	"github.com/selfprotect/selfprotect/store"
)

// The outage test runs the outbox in a child process (this test binary,
// re-executed) so it can be SIGKILLed like a daemon.
const (
	childEnv    = "SELFPROTECT_OUTBOX_CHILD"
	outageHost  = "outage-host"
	outageCount = 20
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		if err := outboxChild(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func outageCase(i int) string { return fmt.Sprintf("0a7a6e00-0000-4000-8000-%012d", i) }

// outboxChild is a stand-in for the daemon's alert path: it queues
// SELFPROTECT_RAISE alerts and runs the dispatcher until killed.
func outboxChild() error {
	cfg, err := alert.Load(os.Getenv("SELFPROTECT_CONFIG"))
	if err != nil {
		return err
	}
	ns, err := Build(cfg)
	if err != nil {
		return err
	}
	s, err := store.Open(os.Getenv("SELFPROTECT_STORE"))
	if err != nil {
		return err
	}
	d, err := alert.NewDispatcher(alert.StoreQueue{Store: s}, alert.DispatcherConfig{
		Notifiers: ns, InitialBackoff: cfg.Outbox.InitialBackoff, MaxBackoff: cfg.Outbox.MaxBackoff,
	})
	if err != nil {
		return err
	}
	o := &alert.Outbox{Store: s, Notifiers: ns, MaxPending: cfg.Outbox.MaxPending, Host: cfg.HostName(), Kick: d.Kick}
	n, _ := strconv.Atoi(os.Getenv("SELFPROTECT_RAISE"))
	for i := range n {
		now := time.Now()
		a := alert.Alert{
			ID: alert.StableID(cfg.HostName(), outageCase(i), alert.Isolated), Case: outageCase(i),
			Transition: alert.Isolated, Severity: alert.SeverityWarning, Suspect: fmt.Sprintf("page:%#x", 0x1000+i),
			Summary: "outage test", EvidenceCount: 2, Host: cfg.HostName(), Time: now,
		}
		if _, err := o.Raise(now, a); err != nil {
			return err
		}
	}
	ctx := context.Background()
	for _, n := range ns {
		if b, ok := n.Notifier.(alert.Background); ok {
			go b.Run(ctx, nil)
		}
	}
	return d.Run(ctx)
}

type child struct {
	cmd *exec.Cmd
	out *strings.Builder
}

func startChild(t *testing.T, storePath, config string, raise int) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "SELFPROTECT_STORE="+storePath,
		"SELFPROTECT_CONFIG="+config, fmt.Sprintf("SELFPROTECT_RAISE=%d", raise))
	c := &child{cmd: cmd, out: &strings.Builder{}}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			t.Logf("child output:\n%s", c.out.String())
		}
	})
	return c
}

func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Signal(syscall.SIGKILL)
		c.cmd.Wait()
	}
}

// waitStore polls the store (read-only, as `status` would) until ok. The
// bound only guards against a hang: under -race with GOMAXPROCS=1 on a
// loaded 2-core host one phase outlasted 90 s and the whole test took 170 s
// (7 s in a plain run).
func waitStore(t *testing.T, path, what string, ok func(pending, sent []store.Delivery) bool) {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond)) }()
	require.Eventually(t, func() bool {
		s, err := store.OpenReadOnly(path)
		if err != nil {
			return false
		}
		defer s.Close()
		pending, err1 := s.Deliveries(store.DeliveryPending)
		sent, err2 := s.Deliveries(store.DeliverySent)
		return err1 == nil && err2 == nil && ok(pending, sent)
	}, 5*time.Minute, 50*time.Millisecond, what)
}

// TestOutageRestartDeliversEachAlertOnce: with every peer down, 20 alerts
// are raised and every delivery fails; the process is SIGKILLed; the peers
// come back and a new process delivers every alert to every notifier
// exactly once.
func TestOutageRestartDeliversEachAlertOnce(t *testing.T) {
	dir := t.TempDir()
	pki := peertest.NewPKI(t, dir)
	smtpPort, amPort, hookPort := peertest.FreePort(t, "tcp"), peertest.FreePort(t, "tcp"), peertest.FreePort(t, "tcp")
	trapPort := peertest.FreePort(t, "udp")
	got := filepath.Join(dir, "exec.got")
	down := filepath.Join(dir, "exec.down")
	require.NoError(t, os.WriteFile(down, nil, 0o600))
	hook := filepath.Join(dir, "hook.sh")
	require.NoError(t, os.WriteFile(hook, []byte(fmt.Sprintf(
		"#!/bin/sh\n[ -e %s ] && { echo down >&2; exit 75; }\necho \"$SELFPROTECT_ALERT_ID\" >> %s\n", down, got)), 0o755))
	config := filepath.Join(dir, "selfprotect.yaml")
	require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(`alerts:
  host: %s
  outbox: {initial_backoff: 20ms, max_backoff: 300ms}
  notifiers:
    - name: mail
      type: email
      timeout: 10s
      email: {host: 127.0.0.1, port: %d, ca_file: %s, from: selfprotect@example.net, to: [ops@example.net]}
    - name: nms
      type: snmp
      timeout: 5s
      snmp: {target: "127.0.0.1:%d", mode: inform, community: public, retries: 1}
    - name: am
      type: alertmanager
      alertmanager: {url: "http://127.0.0.1:%d"}
    - name: hook
      type: webhook
      webhook: {url: "http://127.0.0.1:%d/alerts"}
    - name: script
      type: exec
      exec: {command: [%s]}
`, outageHost, smtpPort, pki.CAFile, trapPort, amPort, hookPort, hook)), 0o600))
	storePath := filepath.Join(dir, "selfprotect.db")
	const notifiers = 5

	first := startChild(t, storePath, config, outageCount)
	waitStore(t, storePath, "every delivery failed once", func(pending, sent []store.Delivery) bool {
		if len(pending) != outageCount*notifiers || len(sent) > 0 {
			return false
		}
		for _, d := range pending {
			if d.Attempts == 0 {
				return false
			}
		}
		return true
	})
	first.kill()

	// The peers come back.
	mailDir := peertest.SMTP(t, pki, smtpPort, peertest.SMTPOptions{})
	trapLog := peertest.Snmptrapd(t, trapPort, "authCommunity log public\n")
	amURL := peertest.Alertmanager(t, amPort)
	var mu sync.Mutex
	hookGot := map[string]int{}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", hookPort))
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hookGot[r.Header.Get("Idempotency-Key")]++
		mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	require.NoError(t, os.Remove(down))

	second := startChild(t, storePath, config, 0)
	waitStore(t, storePath, "every delivery acknowledged", func(pending, sent []store.Delivery) bool {
		return len(pending) == 0 && len(sent) == outageCount*notifiers
	})
	second.kill()

	want := map[string]int{}
	for i := range outageCount {
		want[alert.StableID(outageHost, outageCase(i), alert.Isolated)] = 1
	}

	mails := map[string]int{}
	files, err := filepath.Glob(filepath.Join(mailDir, "*.eml"))
	require.NoError(t, err)
	for _, f := range files {
		fh, err := os.Open(f)
		require.NoError(t, err)
		m, err := mail.ReadMessage(fh)
		require.NoError(t, err)
		mails[m.Header.Get("X-Selfprotect-Alert-Id")]++
		fh.Close()
	}
	require.Equal(t, want, mails, "email")

	traps := map[string]int{}
	log, err := os.ReadFile(trapLog)
	require.NoError(t, err)
	for _, m := range regexp.MustCompile(`spAlertId\.0 = STRING: (\S+)`).FindAllStringSubmatch(string(log), -1) {
		traps[m[1]]++
	}
	require.Equal(t, want, traps, "snmp informs")

	mu.Lock()
	require.Equal(t, want, hookGot, "webhook")
	mu.Unlock()

	lines, err := os.ReadFile(got)
	require.NoError(t, err)
	hooks := map[string]int{}
	for _, l := range strings.Fields(string(lines)) {
		hooks[l]++
	}
	require.Equal(t, want, hooks, "exec")

	// Alertmanager dedupes by labels itself; it must show all 20.
	resp, err := http.Get(amURL + "/api/v2/alerts")
	require.NoError(t, err)
	defer resp.Body.Close()
	var ams []struct {
		Annotations map[string]string `json:"annotations"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ams))
	inAM := map[string]int{}
	for _, a := range ams {
		inAM[a.Annotations["alert_id"]]++
	}
	require.Equal(t, want, inAM, "alertmanager")
}
