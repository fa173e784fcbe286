package email

import (
	"bytes"
	"context"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/internal/peertest"
)

type pki = peertest.PKI

func newPKI(t *testing.T, dir string) pki { return peertest.NewPKI(t, dir) }

type smtpPeer struct {
	port int
	out  string
}

func startSMTP(t *testing.T, p pki, implicit bool, user, password string) smtpPeer {
	port := peertest.FreePort(t, "tcp")
	out := peertest.SMTP(t, p, port, peertest.SMTPOptions{Implicit: implicit, User: user, Password: password})
	return smtpPeer{port: port, out: out}
}

func (p smtpPeer) received(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(p.out, "*.eml"))
	require.NoError(t, err)
	return files
}

func sample() alert.Alert {
	c := "5f0c8a52-7e1d-4d55-9a3c-0b8e2f6a9d41"
	return alert.Alert{
		ID: alert.StableID("db-7", c, alert.Isolated), Case: c, Transition: alert.Isolated,
		Severity: alert.SeverityWarning, Suspect: "page:0x2d94", FRU: "dimm:mc0/CPU_SrcID#0_Ha#0_Chan#1_DIMM#0",
		Summary: "2 corrected errors on page 0x2d94 within 24h", EvidenceCount: 2,
		Evidence: []string{
			"2026-03-14T09:20:00Z trace-mce cpu2 bank7 status 0x9c00000000000090 addr 0x2d94000",
			"2026-03-14T09:26:53Z trace-mce cpu2 bank7 status 0x9c00000000000090 addr 0x2d94040",
		},
		Host: "db-7", Undo: "selfprotect repair 5f0c8a52", Time: time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC),
	}
}

func config(p pki, port int, tls string) alert.EmailConfig {
	return alert.EmailConfig{
		Host: "127.0.0.1", Port: port, TLS: tls, CAFile: p.CAFile,
		From: "selfprotect@db-7.example.net", To: []string{"ops@example.net", "Hardware <hw@example.net>"},
	}
}

func TestEmailDelivered(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	for _, tc := range []struct {
		name           string
		implicit       bool
		tls            string
		user, password string
	}{
		{"starttls", false, alert.TLSStartTLS, "", ""},
		{"starttls with auth", false, alert.TLSStartTLS, "selfprotect", "correct horse"},
		{"implicit tls", true, alert.TLSImplicit, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peer := startSMTP(t, p, tc.implicit, tc.user, tc.password)
			cfg := config(p, peer.port, tc.tls)
			cfg.Username, cfg.Password = tc.user, alert.Secret(tc.password)
			n, err := New(cfg)
			require.NoError(t, err)
			retry, err := n.Notify(context.Background(), sample())
			require.NoError(t, err)
			require.False(t, retry)

			files := peer.received(t)
			require.Len(t, files, 1)
			rcpt, err := os.ReadFile(strings.TrimSuffix(files[0], ".eml") + ".rcpt")
			require.NoError(t, err)
			require.Equal(t, "ops@example.net\nhw@example.net\n", string(rcpt), "every recipient is in the envelope")
			raw, err := os.Open(files[0])
			require.NoError(t, err)
			defer raw.Close()
			msg, err := mail.ReadMessage(raw)
			require.NoError(t, err)
			a := sample()
			require.Equal(t, "<"+a.ID+"@selfprotect.db-7>", msg.Header.Get("Message-Id"))
			require.Equal(t, a.Case, msg.Header.Get("X-Selfprotect-Case"))
			require.Equal(t, "isolated", msg.Header.Get("X-Selfprotect-Transition"))
			require.Equal(t, "warning", msg.Header.Get("X-Selfprotect-Severity"))
			require.Equal(t, a.ID, msg.Header.Get("X-Selfprotect-Alert-Id"))
			require.Equal(t, "selfprotect [warning] db-7 isolated page:0x2d94", msg.Header.Get("Subject"))
			to, err := msg.Header.AddressList("To")
			require.NoError(t, err)
			require.Len(t, to, 2)
			date, err := msg.Header.Date()
			require.NoError(t, err)
			require.True(t, date.Equal(a.Time))
			require.Contains(t, msg.Header.Get("Content-Type"), "text/plain")
			body, err := io.ReadAll(msg.Body)
			require.NoError(t, err)
			text := decodeQP(t, msg.Header.Get("Content-Transfer-Encoding"), body)
			for _, want := range append([]string{
				"Suspect:     page:0x2d94", "FRU:         dimm:mc0/CPU_SrcID#0_Ha#0_Chan#1_DIMM#0",
				"Undo:        selfprotect repair 5f0c8a52", "Evidence (2 errors):",
			}, a.Evidence...) {
				require.Contains(t, text, want)
			}
		})
	}
}

// The end of a health problem reaches the real SMTP server as a reply to
// the problem's mail, naming the alert it resolves.
func TestEmailClearedRepliesToProblem(t *testing.T) {
	p := newPKI(t, t.TempDir())
	peer := startSMTP(t, p, false, "", "")
	n, err := New(config(p, peer.port, alert.TLSStartTLS))
	require.NoError(t, err)
	subject := alert.Subject("health", "tracefs", "source-blind", "1764583200000000000")
	problemID := alert.StableID("db-7", subject, alert.SourceBlind)
	for _, tr := range []alert.Transition{alert.SourceBlind, alert.SourceBlindCleared} {
		a := alert.Alert{ID: alert.StableID("db-7", subject, tr), Case: subject, Transition: tr,
			Severity: alert.DefaultSeverity(tr), Summary: "tracing_on is 0 in instance selfprotect", Host: "db-7",
			Time: time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)}
		_, err := n.Notify(context.Background(), a)
		require.NoError(t, err)
	}
	files := peer.received(t)
	require.Len(t, files, 2)
	byTransition := map[string]*mail.Message{}
	for _, f := range files {
		raw, err := os.Open(f)
		require.NoError(t, err)
		defer raw.Close()
		msg, err := mail.ReadMessage(raw)
		require.NoError(t, err)
		byTransition[msg.Header.Get(HeaderTransition)] = msg
	}
	problem, end := byTransition["source-blind"], byTransition["source-blind-cleared"]
	require.NotNil(t, problem)
	require.NotNil(t, end)
	require.Equal(t, "<"+problemID+"@selfprotect.db-7>", problem.Header.Get("Message-Id"))
	require.Empty(t, problem.Header.Get(HeaderResolves))
	require.Equal(t, problemID, end.Header.Get(HeaderResolves))
	require.Equal(t, problem.Header.Get("Message-Id"), end.Header.Get("In-Reply-To"))
	require.Equal(t, problem.Header.Get("Message-Id"), end.Header.Get("References"))
	require.Equal(t, "selfprotect [info] db-7 source-blind-cleared", end.Header.Get("Subject"))
}

func TestEmailRefusesUntrustedCertificate(t *testing.T) {
	dir := t.TempDir()
	served := newPKI(t, filepath.Join(dir))
	otherDir := filepath.Join(dir, "other")
	require.NoError(t, os.Mkdir(otherDir, 0o700))
	other := newPKI(t, otherDir)
	peer := startSMTP(t, served, false, "", "")
	n, err := New(config(other, peer.port, alert.TLSStartTLS)) // trusts another CA
	require.NoError(t, err)
	retry, err := n.Notify(context.Background(), sample())
	require.Error(t, err)
	require.True(t, retry, "an operator may fix the CA; the alert waits")
	require.Contains(t, err.Error(), "certificate signed by unknown authority")
	require.Empty(t, peer.received(t), "nothing was mailed")
}

func TestEmailWrongPassword(t *testing.T) {
	p := newPKI(t, t.TempDir())
	peer := startSMTP(t, p, false, "selfprotect", "correct horse")
	cfg := config(p, peer.port, alert.TLSStartTLS)
	cfg.Username, cfg.Password = "selfprotect", "hunter2-wrong"
	n, err := New(cfg)
	require.NoError(t, err)
	retry, err := n.Notify(context.Background(), sample())
	require.Error(t, err)
	require.True(t, retry)
	require.NotContains(t, err.Error(), "hunter2")
	require.Empty(t, peer.received(t))
}

func TestEmailUnreachable(t *testing.T) {
	p := newPKI(t, t.TempDir())
	n, err := New(config(p, peertest.FreePort(t, "tcp"), alert.TLSStartTLS))
	require.NoError(t, err)
	retry, err := n.Notify(context.Background(), sample())
	require.True(t, retry)
	require.ErrorContains(t, err, "connection refused")
}

func TestNewRejectsBadCAFile(t *testing.T) {
	_, err := New(alert.EmailConfig{Host: "x", CAFile: "/nonexistent/ca.pem"})
	require.ErrorContains(t, err, "/nonexistent/ca.pem")
}

func decodeQP(t *testing.T, enc string, body []byte) string {
	t.Helper()
	if !strings.EqualFold(enc, "quoted-printable") {
		return string(body)
	}
	out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
	require.NoError(t, err)
	return string(out)
}
