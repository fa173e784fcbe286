package kernel

import (
	"fmt"
	"strings"
)

// benchAppend is on the benches' kernel command lines: on a host loaded
// enough (load 40 on 2 cores, several guests) the guest's early IO-APIC
// timer check fails and the kernel panics at boot ("IO-APIC + timer
// doesn't work"); no_timer_check skips the check, as for any VM.
const benchAppend = "no_timer_check"

// LatencyPages is how many pages each latency run measures: 12 gave
// medians that moved by half from one run to the next, 30 still moved by
// 1-2 ms for one build measured twice in one boot (session 8). 60 pages
// in each of three sections stay inside the daemon's budgets in one boot
// (0.1% of the guest's 1 GiB is 247 pages; 64 a DIMM, each daemon
// counting its own).
const LatencyPages = 60

// LatencyScenario measures, page after page, the time from the deciding
// corrected error (the second on the page) to HWPOISON in kpageflags.
// With the daemon it runs with ras=cec_disable, the built-in policy and
// info logs (as in production: debug adds a line per record on the way to
// the write) timestamped by stamp-run (so the time can be broken down),
// the daemon pinned to CPU 2 (taskset, so GOMAXPROCS=1 as on a busy
// host), through eBPF (path LatencyEBPF, section latency-ebpf) or through
// tracefs (--no-ebpf, latency-tracefs). Without it, CEC (6.12, threshold
// 2 on the Intel model) does the offlining (LatencyCECScenario,
// latency-cec).
//
// The deciding injection's result line goes to a file and reaches the
// console only after the probe: under single-threaded TCG the vCPU that
// writes to the emulated serial port holds the one host thread, byte by
// byte, while the daemon's vCPU waits, and a record the kernel acts on
// inside the injecting write (CEC) is done before that line is printed.
//
// The probe (a kpageflags poll every 20 µs, as the issue measured) runs
// on a CPU of its own (3: the injections run on 1, the daemon on 2, the
// log stamper on 0, so none of them shares the daemon's CPU, as the issue
// had the prober "on another CPU"), is started and watching before the
// deciding injection; a separate trace
// instance on the mono clock dates each mce_record on the same
// CLOCK_MONOTONIC as the probe and the log. The probe sleeps between
// polls: a probe that never sleeps keeps its vCPU busy, and
// single-threaded TCG then runs the daemon's vCPU only at its 100 ms
// round-robin kick, which CEC (acting on the injecting vCPU) never waits
// for. On a quiet host, one run each (2026-12-02): eBPF median 200 ms
// against a probe that never slept, 88 ms against this one, CEC 5.4–5.5
// ms either way.
//
// The same instance dates each page by the kernel alone, without the
// probe: the deciding injection writes a trace_marker line just before
// its injecting write, and a kprobe and a kretprobe on soft_offline_page
// (which CEC's queued work and the daemon's sysfs write both call) stamp
// when the offline starts and returns, all on the instance's clock.
//
// Without the probe (probe false) nothing polls: the deciding injection
// is followed by a plain 100 ms sleep, and the kernel's stamps alone date
// the page. The probe's 20 µs timer is a harness's, not a production
// host's, and under single-threaded TCG each of its wake-ups takes the one
// emulator thread, which might have cost the daemon's path (across vCPUs)
// more than CEC's (on the injecting vCPU). Four runs without it gave the
// ratios the probe gives (session 10, README "Benchmarks").
//
// Each reader is measured in a boot of its own (ras=cec_disable), started
// together with a CEC boot of its own: the two run at once on the host's
// two cores, so the reader and its CEC reference share the host's load.
// (Three sections in one daemon boot beside one CEC boot compared the
// first section with a CEC measured at the same time and the later ones
// with a CEC measured before them, on a host by then running one guest
// instead of two: the later sections' stages ran up to a third faster.)
//
// Besides the daemon's two paths, the floor: no daemon, but the least any
// userspace isolator must do (guest min-isolator, on the daemon's CPU:
// read mce_record from a text trace_pipe, write the page at its second
// record), so each run says how much of the daemon's ratio to CEC is the
// daemon's and how much is being in userspace at all.
func LatencyScenario(path string, probe bool) Scenario {
	sc := Scenario{Name: "latency-" + path, Append: readerAppend}
	switch path {
	case LatencyEBPF:
		sc.Script = readerPins + daemonSection("latency-ebpf", "", probe)
	case LatencyTracefs:
		sc.Script = readerPins + daemonSection("latency-tracefs", "--no-ebpf", probe)
	case LatencyFloor:
		sc.Script = readerPins + latencySection("latency-floor", floorStart, floorStop, probe)
	default:
		panic("latency path " + path)
	}
	return sc
}

// A reader's boot: CEC off, the reader on CPU 2 (the daemon's log
// stamper on 0).
const (
	readerAppend = "ras=cec_disable " + benchAppend
	readerPins   = "PIN='taskset -c 2'\nSTAMPPIN='taskset -c 0'\n"
)

// The readers LatencyScenario measures.
const (
	LatencyEBPF    = "ebpf"
	LatencyTracefs = "tracefs"
	LatencyFloor   = "floor"
	LatencyBase    = "ebpf-base" // LatencyBaseline's
)

// LatencyCECScenario is CEC's boot (6.12, threshold 2 on the Intel model)
// started beside the boot of the reader named pair.
func LatencyCECScenario(pair string, probe bool) Scenario {
	return Scenario{Name: "latency-cec-for-" + pair, Append: benchAppend, Script: latencySection("latency-cec", "", "", probe)}
}

// floorStart runs the minimal isolator where the daemon runs; floorStop
// ends it (it reports its counts as the step min-isolator).
const (
	floorStart = `rm -f /tmp/floor-ready
$PIN guest min-isolator floor /tmp/floor-ready &
FLOOR=$!
while [ ! -e /tmp/floor-ready ]; do usleep 20000; done
`
	floorStop = `kill $FLOOR; wait $FLOOR
`
)

func daemonSection(name, runflags string, probe bool) string {
	return latencySection(name, "RUNFLAGS="+runflags+"\n"+daemonStart(name, "", "info"), daemonStop, probe)
}

// LatencyBaseline is LatencyScenario(LatencyEBPF) running another daemon
// binary (an earlier build), as section latency-ebpf-base: a before/after,
// each beside a CEC boot of its own.
func LatencyBaseline(bin []byte, probe bool) Scenario {
	// In /bin, not /tmp: the hardened launch gives the daemon a private /tmp.
	base := strings.ReplaceAll(daemonSection("latency-"+LatencyBase, "", probe), `SP="selfprotect `, `SP="/bin/selfprotect-base `)
	return Scenario{
		Name: "latency-" + LatencyBase, Append: readerAppend, Files: map[string][]byte{"selfprotect-base": bin},
		Script: "cp /scenario/selfprotect-base /bin/ && chmod +x /bin/selfprotect-base\n" + readerPins + base,
	}
}

// latencySection measures LatencyPages pages with start (the reader that
// isolates: a daemon, the minimal isolator, nothing when CEC does it)
// running, then runs stop.
func latencySection(name, start, stop string, probe bool) string {
	deciding := `  rm -f /tmp/probe-ready
  taskset -c 3 guest -tag probe wait-poisoned $P 10s 20us /tmp/probe-ready &
  POLL=$!
  while [ ! -e /tmp/probe-ready ]; do usleep 2000; done
  taskset -c 1 guest -tag deciding inject-mem 1 $A mark=` + name + ` > /tmp/deciding
  wait $POLL`
	if !probe {
		deciding = `  taskset -c 1 guest -tag deciding inject-mem 1 $A mark=` + name + ` > /tmp/deciding
  usleep 100000`
	}
	return section(name) + holdStart("/tmp/hold-"+name, LatencyPages) + start + fmt.Sprintf(`
guest trace-start %[3]s clock=mono kprobe=soft_offline_page
i=0
while [ $i -lt %[1]d ]; do
  A=$(printf 0x%%x $(( $(cat $H/addr$i) + 0x40 ))); P=$(cat $H/pfn$i)
  taskset -c 1 guest -tag first inject-mem 1 $A
  usleep 300000
%[5]s
  cat /tmp/deciding
  usleep 200000
  i=$((i+1))
done
guest -tag trace trace-count %[3]s %[2]d 10s carry=%[4]d
`, LatencyPages, 2*LatencyPages, name, 4*LatencyPages, deciding) + stop + holdRelease
}
