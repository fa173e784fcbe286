// Package peertest finds the real programs the notifier tests talk to.
package peertest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
)

// Required is the environment variable `make check` sets: with it a
// missing peer fails the test instead of skipping it.
const Required = "SELFPROTECT_PEERS"

// Need returns the path of program (a name on PATH or an absolute path) or
// stops the test: a failure under `make check`, a loud skip otherwise.
// hint says which Debian package provides it.
func Need(t testing.TB, program, hint string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err == nil {
		return path
	}
	Missing(t, fmt.Sprintf("%s not found (%v); install %s (make alert-peers)", program, err, hint))
	return ""
}

// Missing stops the test because a peer is missing.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(Required) != "" {
		t.Fatalf("PEER MISSING: %s", why)
	}
	t.Skipf("PEER MISSING, TEST SKIPPED: %s", why)
}

// FreePort returns a loopback port nothing listens on right now (proto
// "tcp" or "udp"). The peer binds it next; a race with another process is
// possible but rare on loopback.
func FreePort(t testing.TB, proto string) int {
	t.Helper()
	switch proto {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free UDP port: %v", err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	default:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free TCP port: %v", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
}
