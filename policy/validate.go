package policy

import (
	"errors"
	"github.com/selfprotect/selfprotect/strictyaml"
	"strconv"
	"time"
)

// Validate reports every impossible value at once, each naming file:line
// when the Config came from a file.
func (c *Config) Validate() error {
	o := c.origin
	o.Kind = ErrInvalid // also for a Config built in code, which has no origin
	v := validator{o: o}
	if c.Mode != ModeEnforce && c.Mode != ModeDryRun {
		v.add("mode", "must be %q or %q, got %q", ModeEnforce, ModeDryRun, c.Mode)
	}

	r := &c.Rules
	v.atLeast("rules.page.threshold", r.Page.Threshold, 1)
	v.window("rules.page.window", r.Page.Window)
	v.atLeast("rules.dimm.distinct_pages", r.DIMM.DistinctPages, 1)
	v.atLeast("rules.dimm.errors", r.DIMM.Errors, 1)
	v.window("rules.dimm.window", r.DIMM.Window)
	v.atLeast("rules.row.distinct_pages", r.Row.DistinctPages, 2)
	v.window("rules.row.window", r.Row.Window)
	v.atLeast("rules.cpu.threshold", r.CPU.Threshold, 1)
	v.window("rules.cpu.window", r.CPU.Window)
	for _, c := range []struct {
		field string
		n     int
	}{
		{"rules.page.threshold", r.Page.Threshold}, {"rules.dimm.distinct_pages", r.DIMM.DistinctPages},
		{"rules.dimm.errors", r.DIMM.Errors}, {"rules.row.distinct_pages", r.Row.DistinctPages},
		{"rules.cpu.threshold", r.CPU.Threshold},
	} {
		if c.n > MaxCount {
			v.add(c.field, "must be <= %d, got %d: no resource reports that many errors, so the rule would never trip (disable it with enabled: false instead)", MaxCount, c.n)
		}
	}
	if !(r.Storm.Rate > 0) {
		v.add("rules.storm.rate", "must be > 0 errors/s, got %v", r.Storm.Rate)
	}
	if r.Storm.Over < time.Millisecond {
		v.add("rules.storm.over", "must be >= 1ms, got %s", formatDuration(r.Storm.Over))
	}
	v.window("rules.storm.quiet", r.Storm.Quiet)

	b := &c.Budgets
	if !(b.MaxRAMRetiredPercent >= 0 && b.MaxRAMRetiredPercent <= 100) {
		v.add("budgets.max_ram_retired_percent", "must be between 0 and 100, got %v", b.MaxRAMRetiredPercent)
	}
	v.atLeast("budgets.max_pages_per_dimm", b.MaxPagesPerDIMM, 0)
	v.atLeast("budgets.min_online_cpus", b.MinOnlineCPUs, 1)
	if !(b.MinOnlineCPUFraction >= 0 && b.MinOnlineCPUFraction <= 1) {
		v.add("budgets.min_online_cpu_fraction", "must be between 0 and 1, got %v", b.MinOnlineCPUFraction)
	}
	if b.CPUOfflineInterval < 0 {
		v.add("budgets.cpu_offline_interval", "must be >= 0, got %s", formatDuration(b.CPUOfflineInterval))
	}

	for i, cpu := range c.Deny.CPUs {
		if cpu < 0 {
			v.add(indexed("deny.cpus", i), "must be a CPU number >= 0, got %d", cpu)
		}
	}
	if c.EDAC.PollInterval < time.Second {
		v.add("edac.poll_interval", "must be >= 1s, got %s", formatDuration(c.EDAC.PollInterval))
	}
	v.atLeast("engine.max_tracked", c.Engine.MaxTracked, 1)
	if c.Engine.Evidence < 1 || c.Engine.Evidence > maxEvidence {
		v.add("engine.evidence", "must be between 1 and %d, got %d", maxEvidence, c.Engine.Evidence)
	}
	return errors.Join(v.errs...)
}

// MaxCount is the largest count a rule accepts. It is far beyond anything
// hardware reports (a thousand million errors on one page or CPU); larger
// values are typos or attempts to switch a rule off by accident.
const MaxCount = 1_000_000_000

// maxEvidence bounds evidence per case; the engine keeps this many recent
// events, so a larger value would cost memory for every event.
const maxEvidence = 256

type validator struct {
	o    strictyaml.Origin
	errs []error
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, v.o.Errorf(field, format, args...))
}

func (v *validator) atLeast(field string, got, min int) {
	if got < min {
		v.add(field, "must be >= %d, got %d", min, got)
	}
}

func (v *validator) window(field string, d time.Duration) {
	if d <= 0 {
		v.add(field, "must be > 0, got %s", formatDuration(d))
	}
}

func indexed(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
