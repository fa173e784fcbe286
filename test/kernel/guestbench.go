package kernel

import (
	"fmt"
	"strconv"
	"strings"
)

// GuestBench is the deciding path's cost as the guest pays it, step by
// step: the daemon package's BenchmarkDecideCold (each decision after an
// idle spell, so what it touches is cold, which under TCG is what a stage
// costs) run inside the 6.12 Intel guest, pinned to one CPU as the daemon
// is in the latency sections. It takes seconds where a paired make
// bench-kernel takes minutes and swings with the host by more than most
// changes to the path move it.
const (
	guestBenchName  = "BenchmarkDecideCold"
	guestBenchLabel = "@@GUESTBENCH "
)

// GuestBenchScenario runs each test binary of the daemon package (label →
// binary) count times, benchtime decisions a run, the labels taking turns
// (base, this, base, this...) so that neither always runs first.
func GuestBenchScenario(bins map[string][]byte, order []string, benchtime, count int) Scenario {
	sc := Scenario{Name: "guest-bench", Programs: map[string][]byte{}}
	for _, label := range order {
		sc.Programs["daemon-"+label+".test"] = bins[label]
	}
	var b strings.Builder
	for range count {
		for _, label := range order {
			fmt.Fprintf(&b, "echo '%s%s'\n", guestBenchLabel, label)
			// The test binary's temporary files land in /tmp (the guest's
			// RAM, as the daemon's state directory is in the latency
			// sections).
			fmt.Fprintf(&b, "(cd /tmp && GOMAXPROCS=1 taskset -c 2 /scenario/daemon-%s.test -test.run '^$' -test.bench '^%s$' -test.benchtime %dx)\n",
				label, guestBenchName, benchtime)
		}
	}
	sc.Script = b.String()
	return sc
}

// GuestBenchRuns are one label's runs, each metric (unit → value) of one
// benchmark line.
type GuestBenchRuns []map[string]float64

// ParseGuestBench reads the benchmark lines of the scenario's console, per
// label. A label with no line is an error: its binary did not run.
func ParseGuestBench(console string, order []string) (map[string]GuestBenchRuns, error) {
	out := map[string]GuestBenchRuns{}
	label := ""
	for line := range strings.SplitSeq(console, "\n") {
		line = strings.TrimRight(line, "\r")
		if rest, ok := strings.CutPrefix(line, guestBenchLabel); ok {
			label = strings.TrimSpace(rest)
			continue
		}
		if !strings.HasPrefix(line, guestBenchName) || label == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 || len(fields)%2 != 0 {
			return nil, fmt.Errorf("%s: malformed benchmark line %q", label, line)
		}
		m := map[string]float64{}
		// name, iterations, then value-unit pairs.
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q in %q: %w", label, fields[i], line, err)
			}
			m[fields[i+1]] = v
		}
		out[label] = append(out[label], m)
	}
	for _, label := range order {
		if len(out[label]) == 0 {
			return nil, fmt.Errorf("no %s line for %s: the binary did not run", guestBenchName, label)
		}
	}
	return out, nil
}

// Median is the runs' median of unit, and whether every run has it.
func (r GuestBenchRuns) Median(unit string) (float64, bool) {
	var v []float64
	for _, m := range r {
		x, ok := m[unit]
		if !ok {
			return 0, false
		}
		v = append(v, x)
	}
	if len(v) == 0 {
		return 0, false
	}
	return Median(v), true
}
