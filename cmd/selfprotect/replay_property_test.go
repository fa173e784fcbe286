package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
	"github.com/selfprotect/selfprotect/policy"
	"github.com/selfprotect/selfprotect/replay"
	"github.com/selfprotect/selfprotect/sim"
	"github.com/selfprotect/selfprotect/store"
)

// TestReplayMatchesDaemon is the property replay rests on: for the same
// events, replay and the live daemon isolate the same resources. For each
// seed, the daemon runs in process on a simulated machine (8 CPUs, 2
// threads per core, 1 GiB, no EDAC) while random corrected memory errors
// land on a few pages and bursts of L1 errors on random CPUs; then the
// daemon's own history (its store) is replayed with the same policy, and
// the pages and CPUs replay says it would isolate must be exactly those the
// daemon's actions isolated — including CPU offlines refused by the
// one-per-hour budget and pages hit once only.
func TestReplayMatchesDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon on the simulator")
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { replayVersusDaemon(t, seed) })
	}
}

func replayVersusDaemon(t *testing.T, seed uint64) {
	dir := t.TempDir()
	prof := sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 8, ThreadsPerCore: 2, MemoryMB: 1024}
	m, err := sim.Build(filepath.Join(dir, "machine"), prof)
	require.NoError(t, err)
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Serve(ctx) }()

	log := logrus.New()
	log.SetOutput(io.Discard)
	state := filepath.Join(dir, "state")
	d, err := daemon.New(daemon.Options{Paths: kpath.Under(m.Dir()).Resolve(), FS: kpath.OS{},
		StateDir: state, Socket: filepath.Join(dir, "sp.sock"), Log: log})
	require.NoError(t, err)
	dctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx, nil) }()
	defer func() {
		stop()
		<-done
	}()
	socket := filepath.Join(dir, "sp.sock")
	// Status through the control socket, as the CLI asks: in-process calls
	// would race with Run's start-up.
	status := func() daemon.Status {
		resp, err := daemon.Call(socket, daemon.Request{Command: "status"}, 2*time.Second)
		if err != nil || resp.Status == nil {
			return daemon.Status{}
		}
		return *resp.Status
	}
	// A hang guard only: arming waits for the simulator to populate the
	// trace instance, seconds on a loaded host under -race.
	waitFor(t, 60*time.Second, "daemon armed", func() bool { return status().Armed })

	rng := rand.New(rand.NewPCG(seed, 42))
	pages := make([]uint64, 6)
	for i := range pages {
		pages[i] = 0x1000 + uint64(rng.IntN(0x30000))
	}
	records := 0
	for i := 0; i < 14; i++ {
		require.NoError(t, m.InjectMemoryCE(pages[rng.IntN(len(pages))]*fault.PageSize+0x40, 1, rng.IntN(prof.CPUs)))
		records++
	}
	// Two bursts on two different cores (CPU c and c+4 share one): the
	// simulator refuses errors on a CPU the daemon already took offline.
	// Each CPU's ring buffer has its own reader, so two bursts injected
	// back to back on different CPUs reach the daemon's engines in either
	// order, while replay orders them by time; whichever core trips first
	// takes the one-per-hour CPU budget. The daemon must have received the
	// first burst before the second is injected, so that both see the
	// same order.
	cores := prof.CPUs / prof.ThreadsPerCore
	core1 := rng.IntN(cores)
	core2 := (core1 + 1 + rng.IntN(cores-1)) % cores
	for _, core := range []int{core1, core2} {
		require.NoError(t, m.InjectCacheCE(core+cores*rng.IntN(prof.ThreadsPerCore), 5))
		records += 5
		waitFor(t, 30*time.Second, fmt.Sprintf("daemon received %d records", records), func() bool {
			return status().Events.Received >= uint64(records)
		})
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("daemon stored %d records", records), func() bool {
		return status().Events.Stored >= uint64(records)
	})

	// What replay of the daemon's own history says it isolates.
	recs, err := replay.ReadStore(state, "sim")
	require.NoError(t, err)
	require.Len(t, recs, records)
	r, err := replay.New(replay.HostSpec{RAMMiB: uint64(prof.MemoryMB), CPUs: prof.CPUs, ThreadsPerCore: prof.ThreadsPerCore},
		replay.Policy{Name: "default", Config: policy.Defaults()})
	require.NoError(t, err)
	require.NoError(t, r.AddRaw("store", recs))
	want := r.Isolated(0, "sim")
	require.NotEmpty(t, want, "the seed should trip at least one rule")

	// The action worker stores a case with its actions only once it has
	// acted, so wait (bounded) for the daemon to reach replay's answer;
	// if it never does, the comparison below shows the difference.
	deadline := time.Now().Add(30 * time.Second)
	for {
		live, _ := isolatedByDaemon(t, state)
		if equalResources(live, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	require.NoError(t, <-done)
	done <- nil // for the deferred stop
	live, acts := isolatedByDaemon(t, state)
	require.Equal(t, want, live, "replay and the daemon isolated different resources (daemon actions: %+v)", acts)
}

// isolatedByDaemon reads what the daemon's actions isolated, sorted.
func isolatedByDaemon(t *testing.T, state string) ([]fault.Resource, []fault.Action) {
	t.Helper()
	st, err := store.OpenReadOnly(filepath.Join(state, replay.StoreFile))
	require.NoError(t, err)
	defer st.Close()
	acts, err := st.AllActions(0)
	require.NoError(t, err)
	var live []fault.Resource
	for _, a := range acts {
		if a.Outcome == fault.OutcomeIsolated {
			live = append(live, a.Resource)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i] < live[j] })
	return live, acts
}

func equalResources(a, b []fault.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waitFor polls cond until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
