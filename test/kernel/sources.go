package kernel

import (
	"fmt"
	"strings"
)

// errorsAtLeast N SP... exits 0 once the daemon's status counts at least N
// errors: through eBPF a storm arrives as fewer events carrying counts, so
// events received cannot be compared with records delivered.
const errorsAtLeast = `n=$1; shift
got=$("$@" status --json | sed -n 's/^ *"errors": *\([0-9]*\).*/\1/p' | head -1)
[ -n "$got" ] && [ "$got" -ge "$n" ]
`

// EBPFCellScenario is the cell's daemon scenarios with the daemon's
// default sources, so the tracepoints are read through eBPF: page (1),
// uncorrected (3), storm (6) and CPU (2), checked as through tracefs
// (CellScenario runs them with --no-ebpf).
func EBPFCellScenario() Scenario {
	sc := CellScenario()
	sc.Name = "cell-ebpf"
	sc.Files["errors-at-least.sh"] = []byte(errorsAtLeast)
	storm := strings.Replace(stormSection(), "/scenario/received-at-least.sh", "/scenario/errors-at-least.sh", 1)
	sc.Script = "RUNFLAGS=\n" + pageSection("page", "enforce.yaml", "30s") + ueSection() + storm + cpuSection()
	return sc
}

// NeverLateRounds is how many times the never-late scenario injects on
// each CPU, per source.
const NeverLateRounds = 12

// neverLateSection injects one corrected memory error from each CPU in
// turn (the record lands in that CPU's ring buffer), NeverLateRounds times,
// each on its own page so no rule trips, with pauses of 0.1-0.7 s between
// them: a reader that misses a wake-up shows as a record the daemon logs
// late (the issue saw ~10 s). The daemon logs every record at debug level
// under stamp-run, on the injector's CLOCK_MONOTONIC.
func neverLateSection(name, runflags string) string {
	return section(name) + "RUNFLAGS=" + runflags + "\n" + holdStart("/tmp/hold-"+name, 1) +
		daemonStart(name, "--config /scenario/quiet.yaml", "debug") + fmt.Sprintf(`
r=0; k=0
while [ $r -lt %d ]; do
  for c in 0 1 2 3; do
    A=$(printf 0x%%x $(( ADDR0 + 0x40 + (k + 1) * 0x1000 )))
    taskset -c $c guest -tag late-inject inject-mem $c $A
    usleep $(( 100000 + (k %% 7) * 100000 ))
    k=$((k+1))
  done
  r=$((r+1))
done
guest -tag late-status exec $SP status --json
`, NeverLateRounds) + daemonStop + holdRelease
}

// neverLatePolicy keeps every rule from acting on the scenario's errors:
// one per page, none on caches.
const neverLatePolicy = `mode: dry-run
rules:
  page: {enabled: true, threshold: 1000, window: 24h}
`

// NeverLateScenario runs the never-late injections through eBPF, then
// through tracefs (--no-ebpf), in one boot.
func NeverLateScenario() Scenario {
	return Scenario{
		Name:   "never-late",
		Append: "ras=cec_disable",
		Files:  map[string][]byte{"quiet.yaml": []byte(neverLatePolicy)},
		Script: neverLateSection("late-ebpf", "") + neverLateSection("late-tracefs", "--no-ebpf"),
	}
}
