package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The VM suite runs only when SELFPROTECT_KERNEL=1 (make kernel-test sets
// it): each boot costs 10-90 s of software emulation and fetching kernels
// needs the network the first time.
const gateEnv = "SELFPROTECT_KERNEL"

func requireKernelGate(t *testing.T) {
	t.Helper()
	if os.Getenv(gateEnv) != "1" {
		t.Skipf("real-kernel suite: set %s=1 (make kernel-test) to boot QEMU guests", gateEnv)
	}
}

// boots is the suite's shared state: one Lab and one boot per cell and
// scenario, whichever test asks first. Every cell's scenarios run in one
// boot (CellScenario) and each test asserts its own section, which keeps
// the suite within the CI budget.
var boots = &bootCache{runs: map[string]*bootOnce{}}

type bootCache struct {
	labOnce sync.Once
	lab     *Lab
	labErr  error
	work    string

	mu   sync.Mutex
	runs map[string]*bootOnce
}

type bootOnce struct {
	done chan struct{}
	run  *Run
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if boots.work != "" && os.Getenv("SELFPROTECT_KERNEL_WORK") == "" {
		os.RemoveAll(boots.work)
	}
	os.Exit(code)
}

// newLab prepares host tools, the guest helper and the daemon path once.
// Kernels are cached in SELFPROTECT_KERNEL_CACHE or test/kernel/cache.
func newLab(t *testing.T) *Lab {
	t.Helper()
	boots.labOnce.Do(func() {
		cache := os.Getenv("SELFPROTECT_KERNEL_CACHE")
		if cache == "" {
			cache = "cache"
		}
		work := os.Getenv("SELFPROTECT_KERNEL_WORK")
		if work == "" {
			work, boots.labErr = os.MkdirTemp("", "selfprotect-kernel-")
			if boots.labErr != nil {
				return
			}
		} else if boots.labErr = os.MkdirAll(work, 0o755); boots.labErr != nil {
			return
		}
		boots.work = work
		boots.lab, boots.labErr = NewLab(context.Background(), cache, work, os.Getenv("SELFPROTECT_BIN"), filepath.Join("..", "..", "bin", "selfprotect"))
		if v := os.Getenv("SELFPROTECT_KERNEL_TIMEOUT"); v != "" && boots.labErr == nil {
			boots.lab.Timeout, boots.labErr = time.ParseDuration(v)
		}
	})
	require.NoError(t, boots.labErr)
	return boots.lab
}

func matrix(t *testing.T) []Cell {
	t.Helper()
	cells, err := MatrixFromEnv(os.Getenv)
	require.NoError(t, err)
	return cells
}

// start boots sc on cell in the background unless it already ran or runs.
func (b *bootCache) start(lab *Lab, cell Cell, sc Scenario, opt RunOptions) *bootOnce {
	key := cell.String() + "/" + sc.Name
	b.mu.Lock()
	defer b.mu.Unlock()
	if bo, ok := b.runs[key]; ok {
		return bo
	}
	bo := &bootOnce{done: make(chan struct{})}
	b.runs[key] = bo
	go func() {
		defer close(bo.done)
		bo.run, bo.err = lab.Run(context.Background(), cell, sc, opt)
	}()
	return bo
}

// startSuite queues every daemon boot of the selected matrix at once, so
// the two guest slots stay busy while tests assert one by one.
func startSuite(lab *Lab, cells []Cell) {
	for _, cell := range cells {
		boots.start(lab, cell, CellScenario(), RunOptions{WithDaemon: true})
	}
	for _, cell := range cells {
		if cell.Series == Series612 {
			boots.start(lab, cell, CECScenario(), RunOptions{WithDaemon: true})
		}
	}
}

// sharedResults returns the results of sc's (shared) boot on cell, failing
// with the whole console when the guest misbehaved, since the log is the
// only evidence a guest leaves.
func sharedResults(t *testing.T, lab *Lab, cell Cell, sc Scenario, opt RunOptions) Results {
	t.Helper()
	if opt.WithDaemon {
		startSuite(lab, matrix(t))
	}
	bo := boots.start(lab, cell, sc, opt)
	<-bo.done
	return runResults(t, cell, sc, bo.run, bo.err)
}

// runScenario boots sc on cell for this test alone.
func runScenario(t *testing.T, lab *Lab, cell Cell, sc Scenario, opt RunOptions) Results {
	t.Helper()
	run, err := lab.Run(context.Background(), cell, sc, opt)
	return runResults(t, cell, sc, run, err)
}

func runResults(t *testing.T, cell Cell, sc Scenario, run *Run, err error) Results {
	t.Helper()
	if run != nil {
		t.Logf("%s %s: /init after %s (guest uptime %ss), total %s",
			cell, sc.Name, run.Booted.Round(time.Millisecond), run.GuestUptimeAtInit, run.Total.Round(time.Millisecond))
	}
	if err != nil {
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

// checker is what the scenario checks need from a test; the harness
// self-test hands them a recorder instead of the real test.
type checker interface {
	require.TestingT
	Helper()
	Logf(format string, args ...any)
}

// recorder collects what a check would have failed with. FailNow ends the
// check's goroutine the way testing.T's does.
type recorder struct {
	failures []string
	logs     []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}
func (r *recorder) FailNow() { runtime.Goexit() }
func (r *recorder) Helper()  {}
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

// failuresOf runs check against a recorder and returns its failures.
func failuresOf(check func(c checker)) []string {
	rec := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(rec)
	}()
	<-done
	return rec.failures
}

// only returns the single result of step, failing when it is missing,
// repeated or not ok.
func only(t checker, rs Results, step string) Result {
	t.Helper()
	got := rs.Step(step)
	require.Len(t, got, 1, "results of step %q", step)
	require.True(t, got[0].OK, "step %q failed: %s", step, got[0].Error)
	return got[0]
}

func requireAllOK(t checker, rs Results, step string, want int) {
	t.Helper()
	got := rs.Step(step)
	require.Len(t, got, want, "results of step %q", step)
	for _, r := range got {
		require.True(t, r.OK, "step %q failed: %s", step, r.Error)
	}
}

func requireModulesLoaded(t checker, rs Results) {
	t.Helper()
	for _, m := range InjectModules {
		only(t, rs, "insmod:"+moduleName(m))
	}
}

// TestHarness proves the harness on every selected cell without the
// daemon: the first section of the cell's boot (or a boot of its own when
// the daemon is not built).
func TestHarness(t *testing.T) {
	forEachCell(t, false, func(t *testing.T, lab *Lab, cell Cell) {
		var all Results
		if lab.Daemon == "" {
			all = runScenario(t, lab, cell, HarnessScenario(), RunOptions{})
		} else {
			all = sharedResults(t, lab, cell, CellScenario(), RunOptions{WithDaemon: true})
		}
		requireModulesLoaded(t, all)
		rs := all.Section("harness")
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

// daemonOrSkip skips daemon scenarios while the binary is not built.
func daemonOrSkip(t *testing.T, lab *Lab) {
	t.Helper()
	if lab.Daemon == "" {
		require.True(t, errors.Is(lab.DaemonErr, ErrNoDaemon))
		t.Skipf("daemon scenarios: %v", lab.DaemonErr)
	}
}

// forEachCell is the kernel tests' common frame: behind the suite's gate
// (and, with daemon, only once the daemon is built), f runs once per
// selected cell in a parallel subtest named after the cell, so the cells'
// boots share the guest slots instead of queueing behind one another.
func forEachCell(t *testing.T, daemon bool, f func(t *testing.T, lab *Lab, cell Cell)) {
	t.Helper()
	requireKernelGate(t)
	lab := newLab(t)
	if daemon {
		daemonOrSkip(t, lab)
	}
	for _, cell := range matrix(t) {
		t.Run(cell.String(), func(t *testing.T) {
			t.Parallel()
			f(t, lab, cell)
		})
	}
}

// cellSection runs the daemon tests' common start: the cell's shared boot,
// its modules loaded, and the named section.
func cellSection(t *testing.T, lab *Lab, cell Cell, name string) Results {
	t.Helper()
	all := sharedResults(t, lab, cell, CellScenario(), RunOptions{WithDaemon: true})
	requireModulesLoaded(t, all)
	rs := all.Section(name)
	require.NotEmpty(t, rs, "section %q ran", name)
	return rs
}
