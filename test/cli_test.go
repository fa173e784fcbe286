package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/jsonout"
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

// `levels` shows what is about to trip: the closest resources per rule
// (a resource with an open case is the case's, not listed), and any
// resource's every rule on request, in text and in the published JSON.
func TestLevelsCLI(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{})
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1)) // trips the page rule (2 within 24h)
	require.NoError(t, m.InjectMemoryCE(0x2c14040, 1, 1)) // one short of it
	d.settle(500 * time.Millisecond)

	out, code := d.cli("levels")
	require.Equal(t, 0, code, out)
	require.Regexp(t, `(?m)^page\s+page:0x2c14\s+1/2\s+24h\s+one more error trips it$`, out)
	require.Regexp(t, `(?m)^storm\s+machine\s+3/\d+\s+`, out, "the storm rule counts every corrected error")
	require.NotContains(t, out, "page:0x2d94", "its case holds it")

	out, code = d.cli("levels", "page:0x2D94", "page:0x1")
	require.Equal(t, 0, code, out)
	require.Regexp(t, `(?m)^page\s+page:0x2d94\s+\d/2\s+24h\s+case open$`, out, "the case holds the page: its count may restart")
	require.Regexp(t, `(?m)^page\s+page:0x1\s+0/2\s+24h\s+quiet$`, out)

	out, code = d.cli("levels", "page:0x2c14", "--json")
	require.Equal(t, 0, code, out)
	require.NoError(t, jsonout.Validate(jsonSchema(t), "levels", []byte(out)), out)
	var lv []jsonout.Level
	require.NoError(t, json.Unmarshal([]byte(out), &lv), out)
	require.Equal(t, jsonout.Level{Rule: "page", Resource: "page:0x2c14", Count: 1, Threshold: 2, WindowSeconds: 86400}, lv[0])

	out, code = d.cli("levels", "page:zz")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, `resource "page:zz": bad PFN`)
}
