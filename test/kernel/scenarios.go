package kernel

import (
	"fmt"
	"strings"
)

// holdStart starts `guest hold N DIR` in the background and waits for it
// to publish its pages: $ADDR0/$PFN0 (and $ADDR1/$PFN1 when N > 1); $H is
// the directory, $HOLD the holder's PID.
func holdStart(dir string, pages int) string {
	return fmt.Sprintf(`H=%s
guest hold %d $H &
HOLD=$!
while [ ! -e $H/ready ]; do usleep 20000; done
ADDR0=$(cat $H/addr0); PFN0=$(cat $H/pfn0)
if [ -e $H/addr1 ]; then ADDR1=$(cat $H/addr1); PFN1=$(cat $H/pfn1); fi
`, dir, pages)
}

// holdRelease lets the holder verify its pattern and waits for its result.
const holdRelease = `touch $H/release
wait $HOLD
`

// holdKill ends a holder whose page was hard-offlined: touching the
// poisoned page again would kill it with SIGBUS, which is the kernel's
// promise, not something to verify here.
const holdKill = `kill -9 $HOLD; wait $HOLD
`

// section opens a named part of a combined boot; Results.Section selects it.
func section(name string) string {
	return fmt.Sprintf(`echo '@@RESULT {"step":"%s","ok":true,"data":{"name":"%s"}}'`+"\n", sectionStep, name)
}

// daemonStart runs the daemon with its state in the directories it uses by
// default and the unit lets it write (one per section, so sections do not
// see each other's cases; the sandbox gives the daemon a /tmp of its own,
// where the scenario could not reach its socket) under stamp-run,
// which timestamps every log line with CLOCK_MONOTONIC µs, and waits until
// `status` exits 0 (sources armed) before anything is injected. args are
// extra `run` arguments (--config FILE); empty means the built-in policy.
// The shell variables RUNFLAGS (--no-ebpf), PIN (taskset -c 2, the
// daemon's CPU) and STAMPPIN (the log stamper's) apply when a scenario
// sets them. HARDEN (set by /init from the shipped unit)
// enters the unit's file-system sandbox and, through setpriv, leaves the
// daemon only the unit's capabilities; daemon-proc records the privileges
// and mounts the running daemon has.
func daemonStart(name, args, logLevel string) string {
	return fmt.Sprintf(`SP="selfprotect --state /var/lib/selfprotect/%[1]s --socket /run/selfprotect/%[1]s.sock"
DLOG=/tmp/daemon-%[1]s.log
mkdir -p /var/lib/selfprotect/%[1]s
$STAMPPIN guest -tag daemon-exit stamp-run $DLOG $PIN $HARDEN $SP --log-level %[3]s run $RUNFLAGS %[2]s &
DAEMON=$!
guest -tag daemon-armed wait-exec 60s $SP status --json
DPID=$($SP status --json | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
guest -tag daemon-proc proc-status $DPID
`, name, args, logLevel)
}

// daemonStop captures the daemon's cases, stops it (stamp-run passes the
// SIGTERM on and reports the exit code as daemon-exit) and prints its log,
// prefixed, so a failing run shows what the daemon thought.
const daemonStop = `guest -tag faulty exec $SP faulty --all --json
kill $DAEMON; wait $DAEMON
sed 's/^/[daemon] /' $DLOG
`

// scenarioPolicy pins the thresholds the daemon scenarios rely on, so a
// change of built-in defaults cannot silently change what they prove. With
// 4 CPUs and a 0.75 fraction, one CPU may go offline and a second may not.
const scenarioPolicy = `mode: %s
rules:
  page: {enabled: true, threshold: %d, window: 24h}
  cpu: {enabled: true, threshold: 5, window: 24h}
budgets:
  min_online_cpus: 2
  min_online_cpu_fraction: 0.75
  cpu_offline_interval: 1h
`

func policy(mode string, pageThreshold int) []byte {
	return []byte(fmt.Sprintf(scenarioPolicy, mode, pageThreshold))
}

// stormPolicy lowers the storm threshold to what a TCG guest delivers:
// mce-inject takes 1 000-6 000 errors/s but the kernel passes only
// ~250-300/s to the tracepoint (it drops the rest before it, see
// kernel-lab.md), far below the 2 000/s default. quiet stays long so the
// storm cannot end and restart inside the scenario.
const stormPolicy = `rules:
  storm: {enabled: true, rate: 50, over: 1s, quiet: 10m}
`

// receivedAtLeast N SP... exits 0 once the daemon's status shows at least
// N events received.
const receivedAtLeast = `n=$1; shift
got=$("$@" status --json | sed -n 's/.*"received": *\([0-9]*\).*/\1/p')
[ -n "$got" ] && [ "$got" -ge "$n" ]
`

// StormErrors is how many corrected errors the storm scenario injects.
const StormErrors = 10000

// harnessSection proves the harness without the daemon: two corrected
// memory errors on a held page reach mce_record, and a soft offline of
// that page (written by the guest helper) poisons the old frame while the
// holder's data survives.
func harnessSection() string {
	return section("harness") + holdStart("/tmp/hold-harness", 1) + `
guest trace-start kt
guest -tag meminfo-before meminfo
for i in 1 2; do guest -tag inject inject-mem 1 $(printf 0x%x $((ADDR0 + 0x40))); done
guest trace-count kt 2 10s
guest -tag kpf-before kpf $PFN0
guest soft-offline $ADDR0
guest -tag kpf-after kpf $PFN0
guest -tag meminfo-after meminfo
` + holdRelease
}

// pageSection is the scenario 1: two corrected errors on a held
// page make the daemon soft-offline it (data intact, HWPOISON, +4 kB
// HardwareCorrupted); one error on another page leaves that page alone.
// wait-poisoned runs from just before the deciding injection, so its
// mono_us minus the injection's is the decision-to-HWPOISON latency.
// policyFile and pollTimeout let the harness self-test run the same steps
// against a deliberately broken policy without waiting 30 s.
func pageSection(name, policyFile, pollTimeout string) string {
	return section(name) + holdStart("/tmp/hold-"+name, 2) + daemonStart(name, "--config /scenario/"+policyFile, "info") + `
guest -tag meminfo-before meminfo
guest -tag kpf-a-before kpf $PFN0
guest -tag inject-a inject-mem 1 $(printf 0x%x $((ADDR0 + 0x40)))
guest -tag latency wait-poisoned $PFN0 ` + pollTimeout + ` 1ms /tmp/poll-` + name + ` &
POLL=$!
while [ ! -e /tmp/poll-` + name + ` ]; do usleep 5000; done
guest -tag inject-a inject-mem 1 $(printf 0x%x $((ADDR0 + 0x40)))
wait $POLL
B=$(printf 0x%x $((ADDR1 + 0x40)))
guest -tag inject-b inject-mem 1 $B
guest -tag b-seen wait-exec 20s sh -c "$SP status --json | grep -Eq '\"received\": ?([3-9]|[1-9][0-9]+)'"
guest -tag kpf-a-after kpf $PFN0
guest -tag kpf-b-after kpf $PFN1
guest -tag meminfo-after meminfo
guest -tag events exec $SP events --class memory
` + daemonStop + holdRelease
}

// cpuSection is the scenario 2: five corrected cache errors on
// CPU 2 take it offline; five more on CPU 3 are refused by the CPU budget
// and the refusal is visible in faulty --json. It runs last in a boot:
// CPU 2 stays offline.
func cpuSection() string {
	return section("cpu") + daemonStart("cpu", "--config /scenario/enforce.yaml", "info") + `
for i in 1 2 3 4 5; do guest -tag inject-cpu2 inject-cache 2; done
guest -tag cpu2-offline wait-exec 30s sh -c '[ "$(cat /sys/devices/system/cpu/cpu2/online)" = 0 ]'
for i in 1 2 3 4 5; do guest -tag inject-cpu3 inject-cache 3; done
guest -tag refused wait-exec 30s sh -c "$SP faulty --all --json | grep -q '\"refused\"'"
guest -tag cpu2-state cpu-online 2
guest -tag cpu3-state cpu-online 3
` + daemonStop
}

// ueKernelSection injects the uncorrected memory error with no daemon
// running and watches the page for 3 s: it records what the kernel itself
// does with the record (its notifier chain sees it), which scenario 3's
// expectation depends on.
func ueKernelSection() string {
	return section("ue-kernel") + holdStart("/tmp/hold-ue-kernel", 1) + `
guest -tag kpf-before kpf $PFN0
guest -tag inject-ue inject-mem 1 $(printf 0x%x $((ADDR0 + 0x40))) UC
guest -tag kernel-poisoned wait-poisoned $PFN0 3s
guest -tag kpf-after kpf $PFN0
` + holdKill
}

// ueSection is the scenario 3 with the built-in policy: one
// uncorrected memory error with an address on a held page. A separate
// trace instance counts ras:memory_failure_event, which every hard offline
// fires once: a duplicated action would show as two.
func ueSection() string {
	return section("ue") + holdStart("/tmp/hold-ue", 1) + daemonStart("ue", "", "info") + `
guest trace-start ue event=ras/memory_failure_event
guest -tag meminfo-before meminfo
guest -tag kpf-before kpf $PFN0
guest -tag inject-ue inject-mem 1 $(printf 0x%x $((ADDR0 + 0x40))) UC
guest -tag poisoned wait-poisoned $PFN0 20s
guest -tag acted wait-exec 20s sh -c "$SP faulty --all --json | grep -q 'hard-offline'"
guest -tag kpf-after kpf $PFN0
guest -tag meminfo-after meminfo
guest -tag trace trace-count ue 1 5s
` + daemonStop + holdKill
}

// dryRunSection is the scenario 4: the page, CPU and uncorrected
// cases under a dry-run policy. Nothing may reach the kernel: CPU 2 stays
// online, neither page is poisoned, HardwareCorrupted does not move, and
// faulty shows the three dry-run actions. It runs before any section that
// offlines something, so "unchanged" means unchanged since boot.
func dryRunSection() string {
	return section("dry-run") + holdStart("/tmp/hold-dry-run", 2) + daemonStart("dry-run", "--config /scenario/dry-run.yaml", "info") + `
guest -tag meminfo-before meminfo
for i in 1 2; do guest -tag inject-a inject-mem 1 $(printf 0x%x $((ADDR0 + 0x40))); done
for i in 1 2 3 4 5; do guest -tag inject-cpu2 inject-cache 2; done
guest -tag inject-ue inject-mem 1 $(printf 0x%x $((ADDR1 + 0x40))) UC
guest -tag dry-run-actions wait-exec 30s sh -c "$SP status --json | grep -Eq '\"dry-run\": ?3'"
guest -tag kpf-a-after kpf $PFN0
guest -tag kpf-b-after kpf $PFN1
guest -tag cpu2-state cpu-online 2
guest -tag meminfo-after meminfo
guest -tag status exec $SP status --json
` + daemonStop + holdRelease
}

// stormSection is the scenario 6: StormErrors corrected errors on
// one held page as fast as mce-inject takes them. A separate trace
// instance (with room for every record) counts what the tracepoint
// delivered; the script then waits for the daemon to have received as many
// and reads its status, cases and peak RSS.
func stormSection() string {
	return section("storm") + holdStart("/tmp/hold-storm", 1) + daemonStart("storm", "--config /scenario/storm.yaml", "info") + fmt.Sprintf(`
guest trace-start storm kb=8192
guest -tag storm inject-storm 1 $(printf 0x%%x $((ADDR0 + 0x40))) %d
guest -tag delivered trace-count storm stable 120s
N=$(grep -c 'mce_record:' /sys/kernel/tracing/instances/storm/trace)
guest -tag caught-up wait-exec 120s sh /scenario/received-at-least.sh $N $SP
guest -tag status exec $SP status --json
guest -tag rss proc-status $DPID
`, StormErrors) + daemonStop + holdRelease
}

// privilegeProbes end the harness section. shell-proc records the
// privileges of the scenario's shell, which has everything root has:
// TestDaemonHardened's self-test holds it to the hardened checks, which
// must fail. The soft offline with every capability but CAP_SYS_ADMIN
// shows why the unit keeps that one (the kernel refuses with EPERM before
// it looks at the address). seccomp-probe tries a mount under the daemon's
// whole launch, which the unit's SystemCallFilter must refuse; the same
// mount without the filter ($HARDEN_NO_FILTER) shows CAP_SYS_ADMIN alone
// would allow it. read-only-probe writes where ProtectSystem=strict
// forbids. setpriv by its path: busybox's shell would run its own
// setpriv applet, which has no --bounding-set.
const privilegeProbes = `guest -tag shell-proc proc-status $$
/bin/setpriv --bounding-set -all,+bpf,+perfmon -- guest -tag soft-offline-without-sys-admin soft-offline $(printf 0x%x $((ADDR0 + 0x1000)))
$HARDEN guest -tag seccomp-probe exec mount -t tmpfs none /tmp
$HARDEN_NO_FILTER guest -tag mount-without-filter exec mount -t tmpfs none /tmp
$HARDEN guest -tag read-only-probe exec touch /sandbox-probe
`

// CellScenario is one boot per matrix cell (ras=cec_disable) running the
// issue's scenarios in an order where each leaves the next a clean
// machine: the harness check, dry-run (4) before anything is offlined,
// page (1), the harness self-test's broken policy, what the kernel does
// with an uncorrected error, uncorrected (3), storm (6), CPU (2) last since
// it leaves CPU 2 offline.
func CellScenario() Scenario {
	return Scenario{
		Name:   "cell",
		Append: "ras=cec_disable",
		Files: map[string][]byte{
			"enforce.yaml": policy("enforce", 2),
			"dry-run.yaml": policy("dry-run", 2),
			// Off by one: the harness self-test proves scenario 1's checks
			// catch a daemon that waits for a third error.
			"broken.yaml":          policy("enforce", 3),
			"storm.yaml":           []byte(stormPolicy),
			"received-at-least.sh": []byte(receivedAtLeast),
		},
		// The eBPF source forced off: these scenarios prove the tracefs
		// path; EBPFCellScenario runs them again through eBPF.
		Script: "RUNFLAGS=--no-ebpf\n" + harnessSection() + privilegeProbes + dryRunSection() +
			pageSection("page", "enforce.yaml", "30s") + pageSection("page-broken", "broken.yaml", "5s") +
			ueKernelSection() + ueSection() + stormSection() + cpuSection(),
	}
}

// HarnessScenario is the harness check alone, for runs without a daemon
// binary.
func HarnessScenario() Scenario {
	return Scenario{Name: "harness", Append: "ras=cec_disable", Script: harnessSection()}
}

// cecCountSection is issue 7's real-kernel check: with CEC on, three
// corrected errors on one held page and our page threshold at 3. On the
// Intel model CEC (threshold 2) offlines the page at the second error with
// a soft offline (no memory_failure_event), so the daemon's case at the
// third finds the page poisoned and records isolated-by-other; on the AMD
// model (1023) the daemon isolates at its own threshold. Either way the
// three errors are counted three times, not more (status events.errors),
// and status says mce_record is the path and why. A trace instance counts
// memory_failure_event, which a soft offline never fires.
func cecCountSection() string {
	return section("cec-count") + holdStart("/tmp/hold-cec-count", 1) + daemonStart("cec-count", "--config /scenario/enforce3.yaml", "info") + `
guest trace-start mf event=ras/memory_failure_event
guest -tag meminfo-before meminfo
for i in 1 2 3; do guest -tag inject-a inject-mem 1 $(printf 0x%x $((ADDR0 + 0x40))); done
guest -tag acted wait-exec 30s sh -c "$SP faulty --all --json | grep -q 'soft-offline'"
guest -tag counted wait-exec 20s sh /scenario/received-at-least.sh 3 $SP
guest -tag kpf-a-after kpf $PFN0
guest -tag meminfo-after meminfo
guest -tag status exec $SP status --json
guest -tag mf-events trace-count mf stable 2s
` + daemonStop + holdRelease
}

// CECScenario is scenario 5 (6.12 only; 6.1 has no CEC): scenario 1 with
// the kernel's CEC left on. The daemon must report CEC in status, and
// whoever offlines the page, it is poisoned once and the daemon records an
// outcome that is not a failure. Then issue 7's count-once check
// (cecCountSection).
func CECScenario() Scenario {
	page := pageSection("page-cec", "enforce.yaml", "30s")
	page = strings.Replace(page, "guest -tag daemon-armed wait-exec 60s $SP status --json\n",
		"guest -tag daemon-armed wait-exec 60s $SP status --json\n"+
			"guest -tag cec exec sh -c 'cat /sys/kernel/debug/ras/cec/action_threshold'\n", 1)
	return Scenario{
		Name: "cec",
		Files: map[string][]byte{
			"enforce.yaml":         policy("enforce", 2),
			"enforce3.yaml":        policy("enforce", 3),
			"received-at-least.sh": []byte(receivedAtLeast),
		},
		Script: page + cecCountSection(),
	}
}
