package kernel

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestGuestBenchScenario(t *testing.T) {
	sc := GuestBenchScenario(map[string][]byte{"base": []byte("old"), "new": []byte("new")}, []string{"base", "new"}, 40, 3)
	require.Equal(t, map[string][]byte{"daemon-base.test": []byte("old"), "daemon-new.test": []byte("new")}, sc.Programs)
	var turns []string
	for _, line := range strings.Split(sc.Script, "\n") {
		if label, ok := strings.CutPrefix(line, "echo '@@GUESTBENCH "); ok {
			turns = append(turns, strings.TrimSuffix(label, "'"))
		}
	}
	require.Equal(t, []string{"base", "new", "base", "new", "base", "new"}, turns, "the labels take turns:\n%s", sc.Script)
	require.Contains(t, sc.Script, "taskset -c 2 /scenario/daemon-new.test -test.run '^$' -test.bench '^BenchmarkDecideCold$' -test.benchtime 40x)")
}

func TestParseGuestBench(t *testing.T) {
	console := strings.Join([]string{
		"@@BOOTED 2.40 6.12.118+deb12-amd64",
		"@@GUESTBENCH base",
		"goos: linux",
		"BenchmarkDecideCold \t      40\t  31234567 ns/op\t       612.0 budget_µs\t       420.5 diagnose_µs\r",
		"BenchmarkDecideCold \t      40\t  31000000 ns/op\t       600.0 budget_µs\t       400.0 diagnose_µs",
		"BenchmarkDecideCold \t      40\t  31000000 ns/op\t       630.0 budget_µs\t       380.0 diagnose_µs",
		"PASS",
		"@@GUESTBENCH new",
		"BenchmarkDecideCold-2 \t      40\t  30000000 ns/op\t       500.0 budget_µs\t       300.0 diagnose_µs",
	}, "\n")
	got, err := ParseGuestBench(console, []string{"base", "new"})
	require.NoError(t, err)
	require.Len(t, got["base"], 3)
	require.Len(t, got["new"], 1)
	m, ok := got["base"].Median("diagnose_µs")
	require.True(t, ok)
	require.Equal(t, 400.0, m)
	m, ok = got["new"].Median("budget_µs")
	require.True(t, ok)
	require.Equal(t, 500.0, m)
	_, ok = got["new"].Median("intent_µs")
	require.False(t, ok, "a unit no run reported")

	for name, tt := range map[string]struct{ console, want string }{
		"a label with no line": {"@@GUESTBENCH base\nBenchmarkDecideCold 1 2 ns/op\n@@GUESTBENCH new\nFAIL\n", "no BenchmarkDecideCold line for new"},
		"a value not a number": {"@@GUESTBENCH base\nBenchmarkDecideCold 1 x ns/op\n", `"x"`},
		"a value with no unit": {"@@GUESTBENCH base\nBenchmarkDecideCold 1 2 ns/op 3\n", "malformed"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseGuestBench(tt.console, []string{"base", "new"})
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// TestGuestBench is make bench-guest: BenchmarkDecideCold, the deciding
// path cold, step by step, inside the 6.12 Intel guest, for this tree's
// daemon package and, with SELFPROTECT_GUESTBENCH_BASE (a daemon test
// binary built from another revision: CGO_ENABLED=0 go test -c ./daemon),
// for that one first, in the same boot. It prints each stage's median over
// the runs and the ratio to the base; nothing is asserted of the figures.
func TestGuestBench(t *testing.T) {
	requireKernelGate(t)
	if os.Getenv("SELFPROTECT_GUESTBENCH") != "1" {
		t.Skip("guest bench: set SELFPROTECT_GUESTBENCH=1 (make bench-guest)")
	}
	lab := newLab(t)
	bin := filepath.Join(t.TempDir(), "daemon.test")
	build := exec.Command("go", "test", "-c", "-o", bin, "../../daemon")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "building the daemon package's test binary: %s", out)
	bins, order := map[string][]byte{}, []string{"this"}
	bins["this"], err = os.ReadFile(bin)
	require.NoError(t, err)
	if base := os.Getenv("SELFPROTECT_GUESTBENCH_BASE"); base != "" {
		bins["base"], err = os.ReadFile(base)
		require.NoError(t, err)
		order = []string{"base", "this"}
	}
	sc := GuestBenchScenario(bins, order, 40, 7)
	run, err := lab.Run(context.Background(), Cell{Series: Series612, CPU: CPUIntel}, sc, RunOptions{Timeout: 10 * time.Minute})
	if err != nil && run != nil {
		t.Logf("guest console:\n%s", run.Console)
	}
	require.NoError(t, err)
	got, err := ParseGuestBench(run.Console, order)
	if err != nil {
		t.Logf("guest console:\n%s", run.Console)
	}
	require.NoError(t, err)
	units := []string{"diagnose_µs", "intent_µs", "budget_µs", "to_write_µs"}
	// A stage an experiment's build adds (one label's only) follows them.
	var more []string
	for _, label := range order {
		for _, run := range got[label] {
			for u := range run {
				if strings.HasSuffix(u, "_µs") && !slices.Contains(units, u) && !slices.Contains(more, u) {
					more = append(more, u)
				}
			}
		}
	}
	slices.Sort(more)
	units = append(units, more...)
	t.Logf("%s, 6.12 Intel guest (TCG), pinned, 40 decisions a run, median of %d runs (µs):", guestBenchName, len(got[order[0]]))
	for _, label := range order {
		var row []string
		for _, u := range units {
			v, ok := got[label].Median(u)
			if !ok && slices.Contains(more, u) {
				continue
			}
			require.True(t, ok, "%s: %s missing", label, u)
			cell := fmt.Sprintf("%s %.0f", strings.TrimSuffix(u, "_µs"), v)
			if b, ok := got["base"].Median(u); ok && label != "base" && b > 0 {
				cell += fmt.Sprintf(" (%.2f× base)", v/b)
			}
			row = append(row, cell)
		}
		t.Logf("  %-5s %s", label, strings.Join(row, ", "))
	}
}
