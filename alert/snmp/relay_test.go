package snmp

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
)

// lossyRelay forwards UDP between a client and a manager but drops the
// first drop datagrams from the client, like a lossy network.
type lossyRelay struct {
	conn     *net.UDPConn
	mu       sync.Mutex
	seen     int
	dropped  int
	upstream *net.UDPConn
	client   *net.UDPAddr
}

func newLossyRelay(t *testing.T, managerPort, drop int) *lossyRelay {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	up, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: managerPort})
	require.NoError(t, err)
	r := &lossyRelay{conn: conn, upstream: up}
	t.Cleanup(func() { conn.Close(); up.Close() })
	go func() { // client -> manager
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.seen++
			r.client = from
			pass := r.seen > drop
			if !pass {
				r.dropped++
			}
			r.mu.Unlock()
			if pass {
				up.Write(buf[:n])
			}
		}
	}()
	go func() { // manager -> client
		buf := make([]byte, 65536)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			to := r.client
			r.mu.Unlock()
			conn.WriteToUDP(buf[:n], to)
		}
	}()
	return r
}

func (r *lossyRelay) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

// TestInformIsRetriedUntilAcknowledged: the first inform is lost on the
// way; the retry reaches snmptrapd, which acknowledges it, and it is
// logged once.
func TestInformIsRetriedUntilAcknowledged(t *testing.T) {
	d := startTrapd(t)
	relay := newLossyRelay(t, d.port, 1)
	cfg := config(trapd{port: relay.port()}, alert.SNMPv2c, alert.SNMPInform)
	cfg.Retries = 2
	n, err := New(cfg, hostName)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	retry, err := n.Notify(ctx, sample("lossy-inform"))
	require.NoError(t, err)
	require.False(t, retry)
	relay.mu.Lock()
	require.Equal(t, 1, relay.dropped)
	require.GreaterOrEqual(t, relay.seen, 2, "the inform was sent again")
	relay.mu.Unlock()
	require.Eventually(t, func() bool { return strings.Contains(d.contents(), "STRING: lossy-inform\t") },
		10*time.Second, 20*time.Millisecond)
	require.Equal(t, 1, strings.Count(d.contents(), "STRING: lossy-inform\t"), "logged once")

}
