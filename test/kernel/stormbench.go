package kernel

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// StormBenchPages and StormBenchErrors: the storm bench injects
// StormBenchErrors corrected errors on each of StormBenchPages pages.
const (
	StormBenchPages  = 4
	StormBenchErrors = 2500
	// IdleSeconds is how long the daemon sits with no error before the
	// storm: its CPU ticks then are the idle figure.
	IdleSeconds = 60
	// IdleRSSGuardMiB bounds the idle resident set loosely (the target is
	// 20 MiB; see TestStormBench).
	IdleRSSGuardMiB = 32
)

// stormBenchSection runs the daemon (pinned to CPU 2, storm policy), lets
// it idle IdleSeconds, then injects the storm on StormBenchPages held pages from CPU 1; a separate
// trace instance counts what the tracepoint delivered, and the daemon's
// CPU ticks and RSS are read at the start and end of the idle time, when
// the injection ended (the tracepoint count stable) and once it has
// counted every delivered record.
func stormBenchSection(name, runflags string, o StormBenchOptions) string {
	args, dump := "--config /scenario/storm.yaml", ""
	if o.Profile {
		// The state dir, not /tmp: the hardened launch gives the daemon a
		// private /tmp the scenario cannot read.
		prof := "/var/lib/selfprotect/" + name + ".pprof"
		args += " --cpu-profile " + prof
		dump = "guest -tag profile file-base64 " + prof + "\n"
	}
	heap := ""
	if o.HeapProfile {
		// After the idle figures are read: the profile's GC changes them.
		prof := "/var/lib/selfprotect/" + name + ".heap"
		args += " --heap-profile " + prof
		heap = "kill -USR1 $DPID\nguest -tag idle-heap wait-exec 60s grep -m1 'heap profile written' $DLOG\n" +
			"guest -tag idle-heap-smaps proc-smaps $DPID\n"
		dump += "guest -tag heap-profile file-base64 " + prof + "\n"
	}
	late := ""
	if o.LateIdle > 0 {
		// The Go runtime's first periodic GC comes 2 min after start; its
		// stack scan reads the function table back in.
		late = fmt.Sprintf("sleep %d\nguest -tag idle-late proc-status $DPID\nguest -tag idle-late-smaps proc-smaps $DPID\n", o.LateIdle)
	}
	godebug := ""
	if o.GODEBUG != "" {
		// Only the daemon's: the helpers started after it would print
		// their own GC traces.
		godebug = "export GODEBUG=" + o.GODEBUG + "\n"
	}
	return section(name) + "RUNFLAGS=" + runflags + "\n" + holdStart("/tmp/hold-"+name, StormBenchPages) +
		godebug + daemonStart(name, args, "info") + "unset GODEBUG\n" + fmt.Sprintf(`
DPID=$($SP status --json | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
guest trace-start %[1]s kb=8192
guest -tag idle-start proc-status $DPID
guest -tag idle-start-smaps proc-smaps $DPID
sleep %[4]d
guest -tag idle-end proc-status $DPID
guest -tag idle-smaps proc-smaps $DPID
%[5]s%[6]sguest -tag before proc-status $DPID
p=0
while [ $p -lt %[2]d ]; do
  guest -tag storm inject-storm 1 $(printf 0x%%x $(( $(cat $H/addr$p) + 0x40 ))) %[3]d
  p=$((p+1))
done
guest -tag delivered trace-count %[1]s stable 120s
guest -tag injected proc-status $DPID
N=$(grep -c 'mce_record:' /sys/kernel/tracing/instances/%[1]s/trace)
guest -tag caught-up wait-exec 180s sh /scenario/errors-at-least.sh $N $SP
guest -tag after proc-status $DPID
guest -tag status exec $SP status --json
`, name, StormBenchPages, StormBenchErrors, IdleSeconds, heap, late) + daemonStop + dump + holdRelease
}

// StormBenchOptions vary the storm bench and its diagnostics.
type StormBenchOptions struct {
	// Profile has the daemon write a CPU profile of each run, printed
	// base64 as the step "profile".
	Profile bool
	// HeapProfile: once the idle figures are read, the daemon writes a
	// heap profile (step "heap-profile", base64) and logs the runtime's
	// memory classes (step "idle-heap").
	HeapProfile bool
	// GODEBUG goes into the daemon's environment (gctrace=1 puts the heap
	// at each collection in its log).
	GODEBUG string
	// LateIdle: the daemon idles that many seconds more and its resident
	// set is read again (steps "idle-late", "idle-late-smaps").
	LateIdle int
	// Baseline is an earlier build whose eBPF run comes first, as section
	// storm-ebpf-base: an A/B in one boot, where TCG's swings with host
	// load between boots are larger than most changes.
	Baseline []byte
	// NoIsolation turns the page rule off: the storm then costs what its
	// records cost, without the four pages' decisions (each a few store
	// transactions, a soft offline, its verification and a health check),
	// which are the same on both paths.
	NoIsolation bool
}

// StormBenchScenario is the storm through eBPF, then through tracefs, in
// one boot (ras=cec_disable).
func StormBenchScenario(opt StormBenchOptions) Scenario {
	policy := stormPolicy
	if opt.NoIsolation {
		policy += "  page: {enabled: false}\n"
	}
	sc := Scenario{
		Name:   "storm-bench",
		Append: "ras=cec_disable " + benchAppend,
		Files: map[string][]byte{
			"storm.yaml":         []byte(policy),
			"errors-at-least.sh": []byte(errorsAtLeast),
		},
		Script: "PIN='taskset -c 2'\n" + stormBenchSection("storm-ebpf", "", opt) + stormBenchSection("storm-tracefs", "--no-ebpf", opt),
	}
	if opt.Baseline != nil {
		sc.Files["selfprotect-base"] = opt.Baseline
		// In /bin, not /tmp: the hardened launch gives the daemon a
		// private /tmp.
		base := strings.ReplaceAll(stormBenchSection("storm-ebpf-base", "", opt), `SP="selfprotect `, `SP="/bin/selfprotect-base `)
		sc.Script = "cp /scenario/selfprotect-base /bin/ && chmod +x /bin/selfprotect-base\n" +
			strings.Replace(sc.Script, "\n", "\n"+base, 1)
	}
	return sc
}

// threadSwitches is the difference between two "tid:voluntary/nonvoluntary"
// lists (guest proc-status's thread_ctxt) per thread, as "tid:v/nv", in
// thread id order, and the totals. A thread born in between counts from
// zero; one that ended is left out (its switches are gone with it).
func threadSwitches(before, after string) (per string, vol, nonvol float64, err error) {
	parse := func(s string) (map[int][2]float64, error) {
		out := map[int][2]float64{}
		for _, f := range strings.Fields(s) {
			tid, counts, ok1 := strings.Cut(f, ":")
			v, nv, ok2 := strings.Cut(counts, "/")
			id, err1 := strconv.Atoi(tid)
			a, err2 := strconv.ParseFloat(v, 64)
			b, err3 := strconv.ParseFloat(nv, 64)
			if !ok1 || !ok2 || err1 != nil || err2 != nil || err3 != nil {
				return nil, fmt.Errorf("thread switches %q: want tid:voluntary/nonvoluntary", f)
			}
			out[id] = [2]float64{a, b}
		}
		return out, nil
	}
	b, err := parse(before)
	if err != nil {
		return "", 0, 0, err
	}
	a, err := parse(after)
	if err != nil {
		return "", 0, 0, err
	}
	tids := make([]int, 0, len(a))
	for tid := range a {
		tids = append(tids, tid)
	}
	sort.Ints(tids)
	parts := make([]string, 0, len(tids))
	for _, tid := range tids {
		dv, dnv := a[tid][0]-b[tid][0], a[tid][1]-b[tid][1]
		vol += dv
		nonvol += dnv
		parts = append(parts, fmt.Sprintf("%d:%.0f/%.0f", tid, dv, dnv))
	}
	return strings.Join(parts, " "), vol, nonvol, nil
}
