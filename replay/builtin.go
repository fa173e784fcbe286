package replay

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// BuiltinPrefix marks a built-in policy name on the command line.
const BuiltinPrefix = "builtin:"

const day = 24 * time.Hour

// unlimited returns a policy with every rule and budget off, for anchors
// to switch on what the mimicked tool has.
func unlimited() *policy.Config {
	c := policy.Defaults()
	c.Rules.Page.Enabled = false
	c.Rules.DIMM.Enabled = false
	c.Rules.Row.Enabled = false
	c.Rules.CPU.Enabled = false
	c.Rules.Uncorrected.Enabled = false
	c.Rules.Storm.Enabled = false
	c.Budgets.MaxRAMRetiredPercent = 100
	c.Budgets.MaxPagesPerDIMM = math.MaxInt32
	return c
}

func memoryOnly(ev *fault.Event, _ bool) bool { return ev.Class == fault.ClassMemory }

// mcePath says whether a tool on the MCE path (mcelog, CEC) saw the
// record: in a raw history only mce_record-view records; in a trace every
// error but an EDAC counter delta (the error also raised an MCE, unless
// the machine is firmware-first, which the trace format cannot say).
func mcePath(ev *fault.Event, raw bool) bool {
	if !raw {
		return ev.Source != fault.SourceEDACPoll
	}
	switch ev.Source {
	case fault.SourceTraceMCE, fault.SourceEBPF, fault.SourceMcelog:
		return true
	}
	return false
}

// builtins maps names to constructors of the anchor policies. Each note
// says what the anchor does that replay does not model.
var builtins = map[string]func() Policy{
	"selfprotect": func() Policy {
		return Policy{Name: "selfprotect", Config: policy.Defaults()}
	},
	// rasdaemon's page isolation (ras-page-isolation.c): PAGE_CE_THRESHOLD
	// 50 per PAGE_CE_REFRESH_CYCLE 24h, soft offline, fed by EDAC's
	// ras:mc_event only.
	"rasdaemon": func() Policy {
		return Policy{Name: "rasdaemon", Config: unlimited(), Raw: true,
			Sees: func(ev *fault.Event, _ bool) bool {
				return ev.Class == fault.ClassMemory && ev.Source == fault.SourceTraceMC
			},
			newDecider: func() decider { return newLeakyPages(50, day) },
			Notes: []string{
				"page 50 per 24 h cycle (its leaky count: the cycle restarts at the first error after it ends, minus 50 per elapsed cycle), soft offline, no budget; sees only mc_event records (with a DIMM label or source mc_event).",
				"not modelled: its opt-in row and CPU isolation (off by default).",
			}}
	},
	// mcelog's page policy: memory-ce-threshold 2 / 24h (leaky-bucket.c),
	// memory-ce-action soft, from /dev/mcelog (the MCE path).
	"mcelog": func() Policy {
		return Policy{Name: "mcelog", Config: unlimited(), Raw: true,
			Sees:       func(ev *fault.Event, raw bool) bool { return ev.Class == fault.ClassMemory && mcePath(ev, raw) },
			newDecider: func() decider { return newLeakyPages(2, day) },
			Notes: []string{
				"page 2 per 24 h (its leaky bucket), soft offline, no budget; sees every MCE-reported memory error.",
				"not modelled: its cap on tracked pages, its DIMM and socket triggers (they only run scripts) and cache-error CPU offlining.",
			}}
	},
	"cec": func() Policy {
		return cecPolicy("cec", cecCountMax)
	},
	"cec-2": func() Policy {
		return cecPolicy("cec-2", 2)
	},
	// illumos FMA's cpumem diagnosis: page SERD 2 in 72h, DIMM SERD on
	// corrected errors, and the kernel's cap on retired pages
	// (max_pages_retired_bps = 10, 0.1% of physmem, in page_retire.c).
	"fma": func() Policy {
		c := unlimited()
		c.Rules.Page = policy.PageRule{Enabled: true, Threshold: 2, Window: 72 * time.Hour}
		c.Rules.DIMM = policy.DIMMRule{Enabled: true, Errors: 10, DistinctPages: policy.MaxCount, Window: 7 * day}
		c.Rules.Uncorrected.Enabled = true
		c.Budgets.MaxRAMRetiredPercent = 0.1
		return Policy{Name: "fma", Config: c, Sees: memoryOnly,
			Notes: []string{
				"page 2/72h, DIMM 10 errors/week (replace), UE pages retired, at most 0.1% of RAM retired.",
				"approximated: FMA's DIMM engine counts distinct ereports, replay adds each record's count; FMA's CPU and cache diagnosis are not modelled.",
			}}
	},
}

func cecPolicy(name string, threshold uint32) Policy {
	c := unlimited()
	return Policy{Name: name, Config: c, Raw: true, Sees: mcePath,
		newDecider: func() decider { return newCEC(threshold, day) },
		Notes: []string{
			fmt.Sprintf("kernel CEC (drivers/ras/cec.c) model: 512-entry array, action threshold %d, generations decayed every 24 h and every 128 insertions, lowest (generation, count) evicted when full.", threshold),
			"approximated: decay timer starts at the host's first record, not at boot; a record's count is entered count times (at most the threshold); no budget (CEC has none).",
		}}
}

// BuiltinNames lists the built-in policies.
func BuiltinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Anchors are the built-ins that mimic other tools, in report order.
var Anchors = []string{"rasdaemon", "mcelog", "cec", "cec-2", "fma"}

// LoadPolicy resolves "builtin:NAME" or a policy file. "builtin:anchors"
// expands to every anchor.
func LoadPolicy(spec string) ([]Policy, error) {
	if name, ok := strings.CutPrefix(spec, BuiltinPrefix); ok {
		if name == "anchors" {
			out := make([]Policy, 0, len(Anchors))
			for _, a := range Anchors {
				out = append(out, builtins[a]())
			}
			return out, nil
		}
		mk, ok := builtins[name]
		if !ok {
			return nil, fmt.Errorf("unknown built-in policy %q (want one of %s, or anchors)", spec, strings.Join(BuiltinNames(), ", "))
		}
		return []Policy{mk()}, nil
	}
	if _, err := os.Stat(spec); err != nil {
		return nil, fmt.Errorf("policy %s: %w", spec, err)
	}
	cfg, err := policy.Load(spec)
	if err != nil {
		return nil, err
	}
	return []Policy{{Name: spec, Config: cfg}}, nil
}
