package email

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/alert/internal/peertest"
)

// debianPython is Debian's interpreter, which has python3-aiosmtpd; the
// python3 on PATH may be another build without Debian's modules.
const debianPython = "/usr/bin/python3"

type pki struct {
	caFile, certFile, keyFile string
}

// newPKI writes a CA and a server certificate for 127.0.0.1 signed by it.
func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "selfprotect test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	p := pki{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	write := func(path, typ string, b []byte) {
		require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600))
	}
	write(p.caFile, "CERTIFICATE", caDER)
	write(p.certFile, "CERTIFICATE", der)
	write(p.keyFile, "EC PRIVATE KEY", keyDER)
	return p
}

type smtpPeer struct {
	port int
	out  string
}

// startSMTP runs testdata/smtpd.py (aiosmtpd) with the PKI's certificate.
func startSMTP(t *testing.T, p pki, implicit bool, user, password string) smtpPeer {
	t.Helper()
	if _, err := os.Stat(debianPython); err != nil {
		peertest.Missing(t, debianPython+" not found; install python3-aiosmtpd (make alert-peers)")
	}
	if err := exec.Command(debianPython, "-c", "import aiosmtpd").Run(); err != nil {
		peertest.Missing(t, "Debian python3-aiosmtpd is not installed (make alert-peers)")
	}
	out := t.TempDir()
	port := peertest.FreePort(t, "tcp")
	args := []string{"testdata/smtpd.py", "--port", strconv.Itoa(port), "--cert", p.certFile, "--key", p.keyFile, "--out", out}
	if implicit {
		args = append(args, "--implicit")
	}
	if user != "" {
		args = append(args, "--user", user, "--password", password)
	}
	cmd := exec.Command(debianPython, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("smtpd stderr:\n%s", stderr.String())
		}
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "READY" {
			err = io.ErrUnexpectedEOF
		}
		ready <- err
		io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		require.NoError(t, err, "smtpd did not start: %s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("smtpd did not start: %s", stderr.String())
	}
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
		Host: "127.0.0.1", Port: port, TLS: tls, CAFile: p.caFile,
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
