// Package policy turns fault events into cases: rules pick the events that
// matter, SERD engines ("N errors within T") count them per resource, and a
// tripped engine yields a Decision naming the suspect, the FRU and what to
// isolate. Budget checks say whether an isolation is allowed on a given
// machine. The package knows events and cases, never actuators, alerts or
// the store.
package policy

import (
	"time"

	"github.com/selfprotect/selfprotect/strictyaml"
)

// Mode says whether the daemon acts or only says what it would do.
type Mode string

const (
	ModeEnforce Mode = "enforce"
	ModeDryRun  Mode = "dry-run"
)

// Config is the policy file. Every field has a default (Defaults) and a
// `doc` tag; the configuration reference and `check-config` output are
// generated from both, so the tag is the one place a key is explained.
type Config struct {
	Mode    Mode    `yaml:"mode" doc:"enforce isolates failing resources; dry-run only logs and alerts what it would do"`
	Rules   Rules   `yaml:"rules" doc:"which error patterns open a case"`
	Budgets Budgets `yaml:"budgets" doc:"limits on how much of the machine may be isolated"`
	Deny    Deny    `yaml:"deny" doc:"resources that are never isolated, whatever the rules say"`
	EDAC    EDAC    `yaml:"edac" doc:"EDAC sysfs counter polling"`
	Engine  Limits  `yaml:"engine" doc:"memory bounds of the rate engines"`

	// origin remembers where each key was written so Validate can name
	// file:line; empty for a Config built in code.
	origin strictyaml.Origin
}

// Rules holds one entry per diagnosis the engine can make.
type Rules struct {
	Page        PageRule        `yaml:"page" doc:"corrected memory errors on one 4 KiB page: soft offline the page"`
	DIMM        DIMMRule        `yaml:"dimm" doc:"corrected memory errors spread over one DIMM: open a replace-DIMM case naming its label"`
	Row         RowRule         `yaml:"row" doc:"several failing pages in one DRAM row (when EDAC decodes the row): offline every known page of the row"`
	CPU         CPURule         `yaml:"cpu" doc:"corrected errors in a core-private cache (level L0-L2 in a core bank): offline the CPU and its SMT siblings; other cache errors only alert"`
	Uncorrected UncorrectedRule `yaml:"uncorrected" doc:"uncorrected memory error with a usable address: hard offline the page at once, without counting"`
	Storm       StormRule       `yaml:"storm" doc:"machine-wide corrected error storm: one case and alert, per-event logs and alerts suppressed"`
}

// PageRule: Threshold errors on one page within Window.
type PageRule struct {
	Enabled   bool          `yaml:"enabled" doc:"apply this rule"`
	Threshold int           `yaml:"threshold" doc:"corrected errors on one page that trip the rule"`
	Window    time.Duration `yaml:"window" doc:"the errors must land within this time of each other"`
}

// DIMMRule trips on either many distinct pages or many errors.
type DIMMRule struct {
	Enabled       bool          `yaml:"enabled" doc:"apply this rule"`
	DistinctPages int           `yaml:"distinct_pages" doc:"distinct failing pages on one DIMM within the window that trip the rule"`
	Errors        int           `yaml:"errors" doc:"errors on one DIMM within the window that trip the rule (an EDAC record may carry many)"`
	Window        time.Duration `yaml:"window" doc:"sliding window for both counts"`
}

// RowRule: DistinctPages pages of one DRAM row within Window.
type RowRule struct {
	Enabled       bool          `yaml:"enabled" doc:"apply this rule"`
	DistinctPages int           `yaml:"distinct_pages" doc:"distinct failing pages of one DRAM row that trip the rule"`
	Window        time.Duration `yaml:"window" doc:"sliding window"`
}

// CPURule: Threshold cache errors on one CPU within Window.
type CPURule struct {
	Enabled   bool          `yaml:"enabled" doc:"apply this rule"`
	Threshold int           `yaml:"threshold" doc:"corrected cache errors on one CPU (or shared cache) that trip the rule"`
	Window    time.Duration `yaml:"window" doc:"sliding window"`
}

// UncorrectedRule has no counting: the first error is enough.
type UncorrectedRule struct {
	Enabled bool `yaml:"enabled" doc:"apply this rule"`
}

// StormRule detects a machine-wide flood of corrected errors.
type StormRule struct {
	Enabled bool          `yaml:"enabled" doc:"detect storms"`
	Rate    float64       `yaml:"rate" doc:"corrected errors per second, averaged over 'over', above which a storm starts"`
	Over    time.Duration `yaml:"over" doc:"averaging window of the rate"`
	Quiet   time.Duration `yaml:"quiet" doc:"a storm ends after the rate stayed at or below 'rate' this long"`
}

// Budgets bound the damage a wrong diagnosis can do.
type Budgets struct {
	MaxRAMRetiredPercent float64       `yaml:"max_ram_retired_percent" doc:"never retire more than this percentage of RAM (pages retired by anyone count)"`
	MaxPagesPerDIMM      int           `yaml:"max_pages_per_dimm" doc:"never retire more pages than this on one DIMM; replace the DIMM instead"`
	MinOnlineCPUs        int           `yaml:"min_online_cpus" doc:"a CPU offline must leave at least this many CPUs online"`
	MinOnlineCPUFraction float64       `yaml:"min_online_cpu_fraction" doc:"a CPU offline must leave at least ceil(this x present CPUs) online"`
	CPUOfflineInterval   time.Duration `yaml:"cpu_offline_interval" doc:"at most one CPU (with its SMT siblings) offlined per interval; 0 disables the limit"`
}

// Deny lists resources that are never touched.
type Deny struct {
	CPUs  []int    `yaml:"cpus" doc:"CPUs never offlined; CPU 0 is always denied even if omitted"`
	Pages []uint64 `yaml:"pages" fmt:"hex" doc:"page frame numbers (hex like 0x2d94 or decimal) never offlined"`
}

// EDAC configures the sysfs counter poller.
type EDAC struct {
	PollInterval time.Duration `yaml:"poll_interval" doc:"how often EDAC error counters are read (minimum 1s)"`
}

// Limits bound the engine's memory under a storm over many resources.
type Limits struct {
	MaxTracked int `yaml:"max_tracked" doc:"resources tracked per rule; beyond it the least recently seen are forgotten (and counted)"`
	Evidence   int `yaml:"evidence" doc:"events kept as evidence in a case"`
}

// Defaults is the built-in policy (design.md §3): an empty policy file
// means exactly this.
func Defaults() *Config {
	const day = 24 * time.Hour
	return &Config{
		Mode: ModeEnforce,
		Rules: Rules{
			Page: PageRule{Enabled: true, Threshold: 2, Window: day},
			// Tuned on replay's reference traces (README "Replay": 10 000
			// generated hosts × 1 year, seeds 1 and 2; 160 000 DIMMs).
			// Most UEs there come from row-, column- and bank-wide faults
			// whose UE lands on a page that never logged a CE, so only a
			// DIMM verdict gets ahead of them, and the spread of failing
			// pages predicts them where the error count does not: at 5
			// pages within 3 days, 32 of 172 / 32 of 194 UE pages are
			// protected, FMA's 10 errors a week 29 / 28, our old 64 pages
			// or 1000 errors a day 12 / 13; lowering the error count to
			// 20 (at 4 pages) adds ~285 replacements a year and protects
			// no more.
			// 5 pages is the setting with the fewest replace-DIMM cases
			// (3.5 / 3.6 per 1 000 DIMMs a year; FMA 6.0 / 5.8) that
			// protects at least 10 % more UE pages than any anchor on
			// both seeds (6 pages
			// a day: 3.3 / 3.1 per 1 000, but only one UE page ahead of
			// FMA on each seed; 4 pages: 36 / 37 protected at 3.8 / 3.9
			// per 1 000). The 1000-error count stays for EDAC counter
			// deltas, which name no page.
			DIMM:        DIMMRule{Enabled: true, DistinctPages: 5, Errors: 1000, Window: 3 * day},
			Row:         RowRule{Enabled: true, DistinctPages: 3, Window: day},
			CPU:         CPURule{Enabled: true, Threshold: 5, Window: day},
			Uncorrected: UncorrectedRule{Enabled: true},
			Storm:       StormRule{Enabled: true, Rate: 2000, Over: 10 * time.Second, Quiet: 60 * time.Second},
		},
		Budgets: Budgets{
			MaxRAMRetiredPercent: 0.1,
			MaxPagesPerDIMM:      64,
			MinOnlineCPUs:        2,
			MinOnlineCPUFraction: 0.75,
			CPUOfflineInterval:   time.Hour,
		},
		Deny:   Deny{CPUs: []int{0}, Pages: []uint64{}},
		EDAC:   EDAC{PollInterval: 60 * time.Second},
		Engine: Limits{MaxTracked: 2_000_000, Evidence: 16},
	}
}

// DeniedCPU reports whether cpu must never be offlined (CPU 0 always is).
func (c *Config) DeniedCPU(cpu int) bool {
	if cpu == 0 {
		return true
	}
	for _, d := range c.Deny.CPUs {
		if d == cpu {
			return true
		}
	}
	return false
}

// DeniedPage reports whether the page is on the deny-list.
func (c *Config) DeniedPage(pfn uint64) bool {
	for _, d := range c.Deny.Pages {
		if d == pfn {
			return true
		}
	}
	return false
}
