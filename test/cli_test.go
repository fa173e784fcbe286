package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/sim"
)

// The simulator as its own process (`selfprotect sim serve`) driven by the
// `inject` command, as a user would do it by hand; plus a CPU an admin
// offlined, which counts against the budget without degrading status.
func TestSimProcessInjectCLIAndOthersOffline(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "machine")
	serve := exec.Command(binary, "sim", "serve", "--dir", dir, "--kernel", "6.1", "--cpu", "amd", "--cpus", "4")
	var simLog lockedBuffer
	serve.Stdout, serve.Stderr = &simLog, &simLog
	require.NoError(t, serve.Start())
	t.Cleanup(func() {
		_ = serve.Process.Signal(os.Interrupt)
		_ = serve.Wait()
	})
	require.Eventually(t, func() bool {
		_, err := os.Stat(sim.SocketPath(dir))
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "simulator socket: %s", simLog.String())
	m := &machine{Machine: openSim(t, dir)}
	d := startDaemon(t, m, daemonOpts{})

	inject := func(args ...string) {
		t.Helper()
		out, err := exec.Command(binary, append([]string{"inject", "--sim", dir}, args...)...).CombinedOutput()
		require.NoError(t, err, string(out))
	}
	inject("memory-ce", "--addr", "0x2d94040", "--count", "2", "--cpu", "1")
	inject("--scenario", "../sim/testdata/scenarios/cache-ce-two-cpus.yaml")
	d.settle(500 * time.Millisecond)
	outcomes := map[fault.Resource]fault.Outcome{}
	for _, c := range d.faulty() {
		for _, a := range c.Actions {
			outcomes[a.Resource] = a.Outcome
		}
	}
	require.Equal(t, map[fault.Resource]fault.Outcome{
		fault.Page(0x2d94): fault.OutcomeIsolated,
		fault.CPU(2):       fault.OutcomeIsolated,
		fault.CPU(3):       fault.OutcomeRefused,
	}, outcomes)
	require.Equal(t, "0-1,3", m.read(t, "sys/devices/system/cpu/online"))

	// An admin offlines CPU 1 behind our back.
	m.write(t, "sys/devices/system/cpu/cpu1/online", "0")
	require.Eventually(t, func() bool {
		b := d.status().Budgets
		return len(b.CPUsOfflineByOther) == 1 && b.CPUsOfflineByOther[0] == 1 && b.CPUsOnline == 2
	}, 10*time.Second, 20*time.Millisecond)
	out, code := d.cli("status")
	require.Equal(t, 0, code, out)
	require.True(t, strings.Contains(out, "by others [1]"), out)
}

func openSim(t *testing.T, dir string) *sim.Machine {
	t.Helper()
	m, err := sim.Open(dir)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}
