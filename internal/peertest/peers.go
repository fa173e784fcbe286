package peertest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startupBound only keeps a broken peer from hanging the test; it is no
// assertion about speed.
const startupBound = 30 * time.Second

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(startupBound)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer collects a peer's output for the failure log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// run starts cmd and stops it (SIGKILL) when the test ends, logging its
// output if the test failed.
func run(t testing.TB, name string, cmd *exec.Cmd, out *syncBuffer) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && out != nil {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
}

const amConfig = `route:
  receiver: blackhole
  group_wait: 1h
receivers:
  - name: blackhole
`

// Alertmanager runs Debian's prometheus-alertmanager on 127.0.0.1:port
// with a throw-away config and storage, and returns its base URL once it
// is ready.
func Alertmanager(t testing.TB, port int) string {
	t.Helper()
	bin := Need(t, "prometheus-alertmanager", "Debian package prometheus-alertmanager")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte(amConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	out := &syncBuffer{}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=debug")
	cmd.Stdout, cmd.Stderr = out, out
	run(t, "alertmanager", cmd, out)
	base := "http://" + addr
	waitFor(t, "alertmanager", func() bool {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

// PKI is a test CA and a server certificate for 127.0.0.1 signed by it.
type PKI struct {
	CAFile, CertFile, KeyFile string
}

// NewPKI writes a fresh PKI into dir.
func NewPKI(t testing.TB, dir string) PKI {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("generating test certificates: %v", err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "selfprotect test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	ca, err := x509.ParseCertificate(caDER)
	must(err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	must(err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	must(err)
	p := PKI{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	write := func(path, typ string, b []byte) {
		must(os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600))
	}
	write(p.CAFile, "CERTIFICATE", caDER)
	write(p.CertFile, "CERTIFICATE", der)
	write(p.KeyFile, "EC PRIVATE KEY", keyDER)
	return p
}

// DebianPython is Debian's interpreter, which has python3-aiosmtpd; the
// python3 on PATH may be another build without Debian's modules.
const DebianPython = "/usr/bin/python3"

// SMTPOptions configure the aiosmtpd peer.
type SMTPOptions struct {
	Implicit       bool // TLS from the first byte instead of STARTTLS
	User, Password string
}

// SMTP runs smtpd.py (Debian's aiosmtpd) on 127.0.0.1:port with the PKI's
// certificate; each message lands in the returned directory as N.eml,
// its envelope recipients in N.rcpt.
func SMTP(t testing.TB, p PKI, port int, o SMTPOptions) string {
	t.Helper()
	if _, err := os.Stat(DebianPython); err != nil {
		Missing(t, DebianPython+" not found; install python3-aiosmtpd (make alert-peers)")
	}
	if err := exec.Command(DebianPython, "-c", "import aiosmtpd").Run(); err != nil {
		Missing(t, "Debian python3-aiosmtpd is not installed (make alert-peers)")
	}
	_, self, _, _ := runtime.Caller(0)
	out := t.TempDir()
	args := []string{filepath.Join(filepath.Dir(self), "smtpd.py"), "--port", strconv.Itoa(port),
		"--cert", p.CertFile, "--key", p.KeyFile, "--out", out}
	if o.Implicit {
		args = append(args, "--implicit")
	}
	if o.User != "" {
		args = append(args, "--user", o.User, "--password", o.Password)
	}
	cmd := exec.Command(DebianPython, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	run(t, "smtpd", cmd, stderr)
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
		if err != nil {
			t.Fatalf("smtpd did not start: %v\n%s", err, stderr.String())
		}
	case <-time.After(startupBound):
		t.Fatalf("smtpd did not start:\n%s", stderr.String())
	}
	return out
}

// MIBDir links mibs/SELFPROTECT-MIB.txt and the SNMPv2 base modules it
// imports into one directory for smilint and net-snmp. Debian's snmp
// packages leave the IETF base modules out (snmp-mibs-downloader is
// non-free); erlang-snmp ships them.
func MIBDir(t testing.TB) string {
	t.Helper()
	base, _ := filepath.Glob("/usr/lib/erlang/lib/snmp-*/mibs/SNMPv2-SMI.mib")
	if len(base) == 0 {
		Missing(t, "the SNMPv2 base MIBs are missing; install erlang-snmp (make alert-peers)")
	}
	src := filepath.Dir(base[0])
	dir := t.TempDir()
	for _, m := range []string{"SNMPv2-SMI", "SNMPv2-TC", "SNMPv2-CONF", "SNMPv2-MIB"} {
		if err := os.Symlink(filepath.Join(src, m+".mib"), filepath.Join(dir, m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(MIBFile(), filepath.Join(dir, "SELFPROTECT-MIB")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// MIBFile is the absolute path of mibs/SELFPROTECT-MIB.txt.
func MIBFile() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..", "mibs", "SELFPROTECT-MIB.txt")
}

// Snmptrapd runs Debian's snmptrapd on 127.0.0.1:port (UDP) with our MIB
// loaded and conf as its only configuration, logging to the returned file.
func Snmptrapd(t testing.TB, port int, conf string) string {
	t.Helper()
	bin := Need(t, "snmptrapd", "Debian package snmptrapd")
	mibs := MIBDir(t)
	dir := t.TempDir()
	confPath := filepath.Join(dir, "snmptrapd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "trapd.log")
	cmd := exec.Command(bin, "-f", "-C", "-c", confPath, "-Lf", log, "-M", mibs, "-m", "ALL",
		fmt.Sprintf("udp:127.0.0.1:%d", port))
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+filepath.Join(dir, "persist"), "MIBS=", "MIBDIRS=")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	run(t, "snmptrapd", cmd, out)
	t.Cleanup(func() {
		if t.Failed() {
			data, _ := os.ReadFile(log)
			t.Logf("snmptrapd log:\n%s", data)
		}
	})
	waitFor(t, "snmptrapd", func() bool {
		data, _ := os.ReadFile(log)
		return strings.Contains(string(data), "NET-SNMP version")
	})
	return log
}
