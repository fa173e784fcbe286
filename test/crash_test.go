package test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/cpuoffline"
	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
	"github.com/selfprotect/selfprotect/pageoffline"
	"github.com/selfprotect/selfprotect/policy"
	"github.com/selfprotect/selfprotect/sim"
	"github.com/selfprotect/selfprotect/store"
)

// crashPolicy lets every page and most CPUs be isolated, so what the test
// sees is crash safety, not budgets.
const crashPolicy = `
budgets:
  max_ram_retired_percent: 5
  max_pages_per_dimm: 1000000
  min_online_cpus: 1
  min_online_cpu_fraction: 0
  cpu_offline_interval: 0s
`

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	return n
}

// TestCrashCycles kills the daemon (SIGKILL) at random points while it
// counts errors and isolates pages and CPUs, restarts it on the same
// state, and after every restart checks that the store and the kernel
// agree: every poisoned page and offline CPU has its case and action,
// nothing was written twice, every resource whose stored errors reached
// its threshold is isolated, and no decision is left unsettled.
// SELFPROTECT_CRASH_CYCLES sets the number of cycles (make soak: more).
func TestCrashCycles(t *testing.T) {
	crashCycles(t, syscall.SIGKILL, envInt(t, "SELFPROTECT_CRASH_CYCLES", 200))
}

// TestStopCycles is the same with SIGTERM: the daemon must stop cleanly
// (exit 0) and never record a verified isolation as failed.
func TestStopCycles(t *testing.T) {
	crashCycles(t, syscall.SIGTERM, envInt(t, "SELFPROTECT_STOP_CYCLES", 40))
}

func crashCycles(t *testing.T, sig syscall.Signal, cycles int) {
	t.Parallel()
	m := newMachine(t, sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 8})
	state := filepath.Join(t.TempDir(), "state")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (SELFPROTECT_CRASH_SEED replays it)", seed)
	if s := os.Getenv("SELFPROTECT_CRASH_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	next := uint64(0x10000000)
	kills := map[string]int{}
	paths := map[string]int{}
	var last []uint64 // the pages of the cycle just killed
	for cycle := 0; cycle < cycles; cycle++ {
		d := startDaemon(t, m, daemonOpts{policy: crashPolicy, state: state})
		d.settle(100 * time.Millisecond)
		stored := checkCrashInvariants(t, m, state, cycle)
		checkEngineLevels(t, d, stored, last, cycle)
		// Which recovery paths this restart took (shown at the end, so a
		// run that never reaches one says so).
		for what, line := range map[string]string{
			"intent settled": "settling a decision the last run did not finish",
			"found isolated": "found isolated at start",
			"lost decision":  "taking it now",
			"journal import": "journaled but did not store",
		} {
			if strings.Contains(d.log.String(), line) {
				paths[what]++
			}
		}

		// A burst: 2 errors on each of 1-4 fresh pages, interleaved; now
		// and then 5 cache errors on an online CPU (its offline threshold).
		var addrs []uint64
		for range 1 + rng.IntN(4) {
			addrs = append(addrs, next)
			next += 0x1000
		}
		last = addrs
		for range 2 {
			for _, a := range addrs {
				require.NoError(t, m.InjectMemoryCE(a, 1, 0))
			}
		}
		if rng.IntN(8) == 0 {
			if cpu, ok := onlineCPUOtherThan0(t, m, rng); ok {
				require.NoError(t, m.InjectCacheCE(cpu, 5))
			}
		}
		var wait time.Duration
		switch k := rng.IntN(10); {
		case k < 7:
			wait = time.Duration(rng.IntN(50_000)) * time.Microsecond
			kills["0-50ms"]++
		default:
			wait = time.Duration(50+rng.IntN(250)) * time.Millisecond
			kills["50-300ms"]++
		}
		time.Sleep(wait)
		require.NoError(t, d.cmd.Process.Signal(sig))
		select {
		case err := <-d.exited:
			if sig == syscall.SIGTERM {
				require.NoError(t, err, "a SIGTERM stop exits 0\n%s", d.log.String())
				require.NotContains(t, d.log.String(), "context canceled", "nothing in flight is cancelled by the stop")
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("cycle %d: the daemon did not exit within 30 s of %v", cycle, sig)
		}
		d.cmd.ProcessState = &os.ProcessState{} // stopped: the cleanup must not signal it again
	}
	d := startDaemon(t, m, daemonOpts{policy: crashPolicy, state: state})
	d.settle(200 * time.Millisecond)
	checkCrashInvariants(t, m, state, cycles)
	t.Logf("%d cycles with %v (kills %v); restarts that recovered %v; %d offline writes, CPUs offline %q",
		cycles, sig, kills, paths, len(m.Offlined()), m.read(t, "sys/devices/system/cpu/offline"))
}

func onlineCPUOtherThan0(t *testing.T, m *machine, rng *rand.Rand) (int, bool) {
	online, err := cpuoffline.ParseCPUList(m.read(t, "sys/devices/system/cpu/online"))
	require.NoError(t, err)
	var c []int
	for _, n := range online {
		if n != 0 {
			c = append(c, n)
		}
	}
	if len(c) <= 2 {
		return 0, false // keep some CPUs to inject on
	}
	return c[rng.IntN(len(c))], true
}

// checkCrashInvariants compares the store with the simulated kernel once
// the restarted daemon has settled.
func checkCrashInvariants(t *testing.T, m *machine, state string, cycle int) map[uint64]int {
	t.Helper()
	db := filepath.Join(state, "selfprotect.db")
	if _, err := os.Stat(db); err != nil {
		return nil // first start: nothing yet
	}
	st, err := store.OpenReadOnly(db)
	require.NoError(t, err)
	defer st.Close()
	at := fmt.Sprintf("after restart %d: ", cycle)

	un, err := st.Unsettled()
	require.NoError(t, err)
	require.Empty(t, un, at+"every decision is settled")

	iso, err := st.Isolated()
	require.NoError(t, err)
	recorded := map[fault.Resource]bool{}
	for _, i := range iso {
		recorded[i.Resource] = true
	}
	writes := map[uint64]int{}
	for _, o := range m.Offlined() {
		if o.Kind == "soft" || o.Kind == "hard" {
			writes[o.PFN]++
		}
	}
	for pfn, n := range writes {
		require.Equal(t, 1, n, at+"page %#x written once", pfn)
	}
	paths := m.Paths()
	for pfn := range writes {
		p, err := pageoffline.Poisoned(paths, kpath.OS{}, pfn)
		require.NoError(t, err)
		if p {
			require.True(t, recorded[fault.Page(pfn)], at+"poisoned page %#x has its case and action", pfn)
		}
	}
	offline := m.read(t, "sys/devices/system/cpu/offline")
	cpus, err := cpuoffline.ParseCPUList(offline)
	require.NoError(t, err)
	for _, n := range cpus {
		require.True(t, recorded[fault.CPU(n)], at+"offline CPU %d has its case and action", n)
	}

	// Every threshold the stored errors reach is acted on.
	evs, err := st.Events(store.EventQuery{})
	require.NoError(t, err)
	perPage, perCPU := map[uint64]int{}, map[int]int{}
	for _, e := range evs {
		switch {
		case e.Class == fault.ClassMemory && e.AddrValid:
			perPage[e.PFN()] += int(max(e.Count, 1))
		case e.Class == fault.ClassCache:
			perCPU[e.CPU] += int(max(e.Count, 1))
		}
	}
	for pfn, n := range perPage {
		if n < 2 {
			continue
		}
		p, err := pageoffline.Poisoned(paths, kpath.OS{}, pfn)
		require.NoError(t, err)
		require.True(t, p, at+"page %#x has %d stored errors: it must be isolated", pfn, n)
	}
	for cpu, n := range perCPU {
		if n >= 5 {
			require.Contains(t, ","+expand(cpus)+",", ","+strconv.Itoa(cpu)+",", at+"CPU %d has %d stored cache errors: it must be offline", cpu, n)
		}
	}
	// A page recorded isolated by us is poisoned (the store never claims
	// more than the kernel did).
	for _, i := range iso {
		if pfn, err := i.Resource.PFN(); err == nil && i.ByUs {
			p, err := pageoffline.Poisoned(paths, kpath.OS{}, pfn)
			require.NoError(t, err)
			require.True(t, p, at+"%s recorded isolated", i.Resource)
		}
	}
	return perPage
}

// checkEngineLevels compares the restarted daemon's page engine with the
// stored errors of the pages the last cycle hit: one stored error counts
// one (the engine was rebuilt from the store), two have tripped it.
func checkEngineLevels(t *testing.T, d *daemonProc, stored map[uint64]int, pages []uint64, cycle int) {
	t.Helper()
	for _, addr := range pages {
		pfn := addr >> 12
		resp, err := daemon.Call(d.socket, daemon.Request{Command: "levels", Resource: string(fault.Page(pfn))}, 30*time.Second)
		require.NoError(t, err)
		var page *policy.Level
		for i := range resp.Levels {
			if resp.Levels[i].Rule == policy.RulePage {
				page = &resp.Levels[i]
			}
		}
		require.NotNil(t, page, "levels of page %#x: %+v", pfn, resp.Levels)
		n := stored[pfn]
		at := fmt.Sprintf("after restart %d: page %#x with %d stored errors: engine %+v", cycle, pfn, n, *page)
		if n >= 2 {
			require.True(t, page.Tripped, at)
		} else {
			require.Equal(t, uint64(n), page.Count, at)
			require.False(t, page.Tripped, at)
		}
	}
}

func expand(cpus []int) string {
	s := make([]string, len(cpus))
	for i, n := range cpus {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
