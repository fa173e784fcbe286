package test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/store"
)

// notifyListener records the sd_notify messages a daemon sends.
type notifyListener struct {
	mu    sync.Mutex
	pings []time.Time
}

func listenNotify(t *testing.T) (string, *notifyListener) {
	dir, err := os.MkdirTemp("", "spn")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	n := &notifyListener{}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := c.ReadFromUnix(buf)
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:k]), "WATCHDOG=1") {
				n.mu.Lock()
				n.pings = append(n.pings, time.Now())
				n.mu.Unlock()
			}
		}
	}()
	return path, n
}

func (n *notifyListener) between(a, b time.Time) (count int, maxGap time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var last time.Time
	for _, p := range n.pings {
		if p.Before(a) || p.After(b) {
			continue
		}
		count++
		if !last.IsZero() && p.Sub(last) > maxGap {
			maxGap = p.Sub(last)
		}
		last = p
	}
	return count, maxGap
}

// Actions that fail slowly (each verify waits seconds for a HWPOISON that
// never comes) must not stop intake nor the watchdog: errors keep being
// counted and WATCHDOG=1 keeps coming while the action worker is busy.
// The daemon runs with its default health interval (15 s) and a 2 s
// watchdog set the way systemd sets it: it must ping every second.
func TestSlowFailingActionsKeepIntakeAndWatchdog(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	sock, n := listenNotify(t)
	d := startDaemon(t, m, daemonOpts{health: "default", env: []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=2000000"}})
	const slow = 3
	require.NoError(t, m.FailNextOffline(slow))
	for i := range slow {
		require.NoError(t, m.InjectMemoryCE(uint64(0x100000+i*0x1000), 2, 1))
	}
	start := time.Now()
	require.Eventually(t, func() bool { return d.status().Pending > 0 }, 30*time.Second, 5*time.Millisecond)
	// While the worker is busy, more errors arrive and are counted.
	before := d.status().Events.Received
	for i := range 20 {
		require.NoError(t, m.InjectMemoryCE(uint64(0x200000+i*0x1000), 1, 1))
	}
	require.Eventually(t, func() bool { return d.status().Events.Received >= before+20 }, 30*time.Second, 5*time.Millisecond)
	require.Positive(t, d.status().Pending, "errors were counted while actions were still pending")
	require.Eventually(t, func() bool { return d.status().Pending == 0 }, 60*time.Second, 20*time.Millisecond)
	end := time.Now()
	count, gap := n.between(start, end)
	t.Logf("slow-failing actions: %d failing offlines took %v; %d watchdog pings meanwhile, largest gap %v (watchdog 2 s)",
		slow, end.Sub(start).Round(time.Millisecond), count, gap.Round(time.Millisecond))
	require.GreaterOrEqual(t, count, int(end.Sub(start)/time.Second)/2, "the watchdog is pinged while actions run")
}

// seedCases writes n closed cases straight into a fresh store, in one
// transaction (through the API it would take minutes).
func seedCases(t *testing.T, state string, n int) {
	require.NoError(t, os.MkdirAll(state, 0o700))
	db := filepath.Join(state, "selfprotect.db")
	st, err := store.Open(db)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	raw, err := sql.Open("sqlite", db)
	require.NoError(t, err)
	defer raw.Close()
	tx, err := raw.Begin()
	require.NoError(t, err)
	ins, err := tx.Prepare(`INSERT INTO cases(id, opened, rule, diagnosis, suspect, also, fru, state, summary, evidence)
		VALUES (?, ?, 'page', 'soft-offline-page', ?, '[]', 'DIMM_A1', 'closed', 'seeded for a load test', '[]')`)
	require.NoError(t, err)
	at := time.Now().Add(-48 * time.Hour).UnixNano()
	for i := range n {
		_, err := ins.Exec(fmt.Sprintf("seed-%08d", i), at, fmt.Sprintf("page:%#x", 0x100000+i))
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())
}

// With 100 000 cases in the store and four clients scraping status and
// metrics as fast as they can, an isolation is not delayed by them:
// status and metrics read in-memory counts, never the case table.
func TestScrapersWith100kCasesDoNotDelayIsolation(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	state := filepath.Join(t.TempDir(), "state")
	const seeded = 100_000
	seedCases(t, state, seeded)
	// The ten test pages share a DIMM: without the DIMM rule they stay ten
	// page cases (its 5 distinct pages would add a replace-DIMM case).
	d := startDaemon(t, m, daemonOpts{state: state, policy: "rules: {dimm: {enabled: false}}\n"})
	s := d.status()
	require.Equal(t, seeded, s.CasesTotal)
	require.Equal(t, seeded, s.CasesByState["closed"])
	require.True(t, strings.HasPrefix(s.Metrics, "http://"), s.Metrics)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var scrapes int
	var slowest time.Duration
	var size int
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				var n int
				if i%2 == 0 {
					resp, err := daemon.Call(d.socket, daemon.Request{Command: "status"}, 10*time.Second)
					if err != nil {
						continue
					}
					b, _ := json.Marshal(resp)
					n = len(b)
				} else {
					resp, err := http.Get(s.Metrics)
					if err != nil {
						continue
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					n = len(b)
				}
				el := time.Since(t0)
				mu.Lock()
				scrapes++
				slowest = max(slowest, el)
				if i%2 == 0 {
					size = max(size, n)
				}
				mu.Unlock()
			}
		}()
	}
	var lat []time.Duration
	for i := range 10 {
		addr := uint64(0x3000000 + i*0x1000)
		before := len(m.Offlined())
		t0 := time.Now()
		require.NoError(t, m.InjectMemoryCE(addr, 2, 1))
		require.Eventually(t, func() bool { return len(m.Offlined()) > before }, 30*time.Second, time.Millisecond)
		lat = append(lat, time.Since(t0))
	}
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	mu.Lock()
	t.Logf("100k cases, 4 scrapers (%d scrapes, slowest %v, status answer %d bytes): isolation latency median %v, max %v",
		scrapes, slowest.Round(time.Millisecond), size, lat[len(lat)/2], lat[len(lat)-1])
	mu.Unlock()
	require.Equal(t, seeded+10, d.status().CasesTotal)
}
