package kernel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The VM suite runs only when SELFPROTECT_KERNEL=1 (make kernel-test sets
// it): each boot costs 10-30 s of software emulation and fetching kernels
// needs the network the first time.
const gateEnv = "SELFPROTECT_KERNEL"

func requireKernelGate(t *testing.T) {
	t.Helper()
	if os.Getenv(gateEnv) != "1" {
		t.Skipf("real-kernel suite: set %s=1 (make kernel-test) to boot QEMU guests", gateEnv)
	}
}

// newLab prepares host tools, the guest helper and the daemon path.
// Kernels are cached in SELFPROTECT_KERNEL_CACHE or test/kernel/cache.
func newLab(t *testing.T) *Lab {
	t.Helper()
	cache := os.Getenv("SELFPROTECT_KERNEL_CACHE")
	if cache == "" {
		cache = "cache"
	}
	work := t.TempDir()
	if keep := os.Getenv("SELFPROTECT_KERNEL_WORK"); keep != "" {
		require.NoError(t, os.MkdirAll(keep, 0o755))
		work = keep
	}
	lab, err := NewLab(context.Background(), cache, work, os.Getenv("SELFPROTECT_BIN"), filepath.Join("..", "..", "bin", "selfprotect"))
	require.NoError(t, err)
	return lab
}

func matrix(t *testing.T) []Cell {
	t.Helper()
	cells, err := MatrixFromEnv(os.Getenv)
	require.NoError(t, err)
	return cells
}

// runScenario boots sc on cell and fails with the whole console when the
// guest misbehaved, since the log is the only evidence a guest leaves.
func runScenario(t *testing.T, lab *Lab, cell Cell, sc Scenario, opt RunOptions) Results {
	t.Helper()
	run, err := lab.Run(context.Background(), cell, sc, opt)
	if run != nil {
		t.Logf("%s %s: /init after %s (guest uptime %ss), total %s",
			cell, sc.Name, run.Booted.Round(time.Millisecond), run.GuestUptimeAtInit, run.Total.Round(time.Millisecond))
	}
	if err != nil || t.Failed() {
		if run != nil {
			t.Logf("guest console:\n%s", run.Console)
		}
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		if t.Failed() && run != nil {
			t.Logf("guest console:\n%s", run.Console)
		}
	})
	return run.Results
}

// only returns the single result of step, failing when it is missing,
// repeated or not ok.
func only(t *testing.T, rs Results, step string) Result {
	t.Helper()
	got := rs.Step(step)
	require.Len(t, got, 1, "results of step %q", step)
	require.True(t, got[0].OK, "step %q failed: %s", step, got[0].Error)
	return got[0]
}

func requireAllOK(t *testing.T, rs Results, step string, want int) {
	t.Helper()
	got := rs.Step(step)
	require.Len(t, got, want, "results of step %q", step)
	for _, r := range got {
		require.True(t, r.OK, "step %q failed: %s", step, r.Error)
	}
}

func requireModulesLoaded(t *testing.T, rs Results) {
	t.Helper()
	for _, m := range InjectModules {
		only(t, rs, "insmod:"+moduleName(m))
	}
}

// TestHarness proves the harness on every selected cell without the daemon.
func TestHarness(t *testing.T) {
	requireKernelGate(t)
	lab := newLab(t)
	for _, cell := range matrix(t) {
		t.Run(cell.String(), func(t *testing.T) {
			t.Parallel()
			rs := runScenario(t, lab, cell, HarnessScenario(), RunOptions{})
			requireModulesLoaded(t, rs)
			requireAllOK(t, rs, "inject", 2)
			n, _ := only(t, rs, "trace-count").Number("mce_record")
			require.Equal(t, 2.0, n, "mce_record events delivered")

			poisoned, _ := only(t, rs, "kpf-before").Bool("hwpoison")
			require.False(t, poisoned, "page poisoned before the soft offline")
			only(t, rs, "soft-offline")
			poisoned, _ = only(t, rs, "kpf-after").Bool("hwpoison")
			require.True(t, poisoned, "HWPOISON after the soft offline")

			before, _ := only(t, rs, "meminfo-before").Number("hardware_corrupted_kb")
			after, _ := only(t, rs, "meminfo-after").Number("hardware_corrupted_kb")
			require.Equal(t, before+4, after, "HardwareCorrupted grows by one page")

			hold := only(t, rs, "hold")
			bad, _ := hold.Number("bad_words")
			require.Zero(t, bad, "held data intact")
			require.NotEqual(t, hold.Data["pfns_before"], hold.Data["pfns_after"], "the held page moved to a new frame")
		})
	}
}

// daemonOrSkip skips daemon scenarios while the binary is not built.
func daemonOrSkip(t *testing.T, lab *Lab) {
	t.Helper()
	if lab.Daemon == "" {
		require.True(t, errors.Is(lab.DaemonErr, ErrNoDaemon))
		t.Skipf("daemon scenarios: %v", lab.DaemonErr)
	}
}
