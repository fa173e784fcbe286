package kernel

import "fmt"

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

// StormBenchOptions are the storm bench's diagnostics. Profile: the daemon
// writes a CPU profile of each run, printed base64 as the step "profile".
// HeapProfile: once the idle figures are read, the daemon writes a heap
// profile (step "heap-profile", base64) and logs the runtime's memory
// classes (step "idle-heap"). LateIdle: the daemon idles that many seconds
// more and its resident set is read again (steps "idle-late", "idle-late-smaps").
// GODEBUG goes into the daemon's environment (gctrace=1 puts the heap at
// each collection in its log).
type StormBenchOptions struct {
	Profile     bool
	HeapProfile bool
	GODEBUG     string
	LateIdle    int // seconds idled after the idle figures, then sampled again

}

// StormBenchScenario is the storm through eBPF, then through tracefs, in
// one boot (ras=cec_disable).
func StormBenchScenario(o StormBenchOptions) Scenario {
	return Scenario{
		Name:   "storm-bench",
		Append: "ras=cec_disable " + benchAppend,
		Files: map[string][]byte{
			"storm.yaml":         []byte(stormPolicy),
			"errors-at-least.sh": []byte(errorsAtLeast),
		},
		Script: "PIN='taskset -c 2'\n" + stormBenchSection("storm-ebpf", "", o) + stormBenchSection("storm-tracefs", "--no-ebpf", o),
	}
}
