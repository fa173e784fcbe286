package kernel

import "strings"

// holdPrelude starts `guest hold N` in the background and waits for it to
// publish its pages: $ADDR0/$PFN0 (and $ADDR1/$PFN1 when N > 1).
const holdPrelude = `H=/tmp/hold
guest hold $HOLD_PAGES $H &
HOLD=$!
while [ ! -e $H/ready ]; do usleep 20000; done
ADDR0=$(cat $H/addr0); PFN0=$(cat $H/pfn0)
if [ -e $H/addr1 ]; then ADDR1=$(cat $H/addr1); PFN1=$(cat $H/pfn1); fi
`

// holdRelease lets the holder verify its pattern and waits for its result.
const holdRelease = `touch $H/release
wait $HOLD
`

// HarnessScenario proves the harness end to end without the daemon: two
// corrected memory errors on a held page reach mce_record, and a soft
// offline of that page (written by the guest helper) poisons the old frame
// while the holder's data survives.
func HarnessScenario() Scenario {
	return Scenario{
		Name:   "harness",
		Append: "ras=cec_disable",
		Script: "HOLD_PAGES=1\n" + holdPrelude + `
guest trace-start kt
guest -tag meminfo-before meminfo
for i in 1 2; do guest -tag inject inject-mem 1 $(printf 0x%x $((ADDR0 + 0x40))); done
guest trace-count kt 2 10s
guest -tag kpf-before kpf $PFN0
guest soft-offline $ADDR0
guest -tag kpf-after kpf $PFN0
guest -tag meminfo-after meminfo
` + holdRelease,
	}
}

// scenarioPolicy pins the thresholds the daemon scenarios rely on, so a
// change of built-in defaults cannot silently change what they prove. With
// 4 CPUs and a 0.75 fraction, one CPU may go offline and a second may not.
const scenarioPolicy = `mode: enforce
rules:
  page: {enabled: true, threshold: 2, window: 24h}
  cpu: {enabled: true, threshold: 5, window: 24h}
budgets:
  min_online_cpus: 2
  min_online_cpu_fraction: 0.75
  cpu_offline_interval: 1h
`

// daemonStart runs the daemon with its state in tmpfs and waits until
// `status` exits 0 (sources armed) before anything is injected.
const daemonStart = `SP="selfprotect --state /tmp/state --socket /tmp/sp.sock"
mkdir -p /tmp/state
$SP run --config /scenario/policy.yaml >/tmp/daemon.log 2>&1 &
DAEMON=$!
guest -tag daemon-armed wait-exec 60s $SP status --json
`

// daemonStop captures the daemon's cases, stops it and prints its log
// (prefixed) so a failing run shows what the daemon thought.
const daemonStop = `guest -tag faulty exec $SP faulty --all --json
kill $DAEMON; wait $DAEMON
echo "@@DAEMON-EXIT $?"
sed 's/^/[daemon] /' /tmp/daemon.log
`

// The deciding injection's mono_us minus latency's mono_us is the
// injection → HWPOISON time; the poller starts before the injection so it
// cannot miss the moment.

// PageScenario is the scenario 1: two corrected errors on a held
// page make the daemon soft-offline it (data intact, HWPOISON, +4 kB
// HardwareCorrupted); one error on another page leaves that page alone.
// wait-poisoned runs from just before the deciding injection, so its
// elapsed time is the decision-to-HWPOISON latency.
func PageScenario() Scenario {
	return Scenario{
		Name:   "page",
		Append: "ras=cec_disable",
		Files:  map[string][]byte{"policy.yaml": []byte(scenarioPolicy)},
		Script: "HOLD_PAGES=2\n" + holdPrelude + daemonStart + `
guest -tag meminfo-before meminfo
guest -tag kpf-a-before kpf $PFN0
guest -tag inject-a inject-mem 1 $(printf 0x%x $((ADDR0 + 0x40)))
guest -tag latency wait-poisoned $PFN0 30s &
POLL=$!
guest -tag inject-a inject-mem 1 $(printf 0x%x $((ADDR0 + 0x40)))
wait $POLL
B=$(printf 0x%x $((ADDR1 + 0x40)))
guest -tag inject-b inject-mem 1 $B
guest -tag b-seen wait-exec 20s sh -c "$SP status --json | grep -Eq '\"received\": ?([3-9]|[1-9][0-9]+)'"
guest -tag kpf-a-after kpf $PFN0
guest -tag kpf-b-after kpf $PFN1
guest -tag meminfo-after meminfo
guest -tag events exec $SP events --class memory
` + daemonStop + holdRelease,
	}
}

// CPUScenario is the scenario 2: five corrected cache errors on
// CPU 2 take it offline; five more on CPU 3 are refused by the CPU budget
// and the refusal is visible in faulty --json.
func CPUScenario() Scenario {
	return Scenario{
		Name:   "cpu",
		Append: "ras=cec_disable",
		Files:  map[string][]byte{"policy.yaml": []byte(scenarioPolicy)},
		Script: daemonStart + `
for i in 1 2 3 4 5; do guest -tag inject-cpu2 inject-cache 2; done
guest -tag cpu2-offline wait-exec 30s sh -c '[ "$(cat /sys/devices/system/cpu/cpu2/online)" = 0 ]'
for i in 1 2 3 4 5; do guest -tag inject-cpu3 inject-cache 3; done
guest -tag refused wait-exec 30s sh -c "$SP faulty --all --json | grep -q '\"refused\"'"
guest -tag cpu2-state cpu-online 2
guest -tag cpu3-state cpu-online 3
` + daemonStop,
	}
}

// PageScenarioCEC is scenario 1 with the kernel's own CEC left on (6.12
// only; 6.1 has none): it records who offlines the page when both the
// kernel and the daemon count the same errors.
func PageScenarioCEC() Scenario {
	sc := PageScenario()
	sc.Name, sc.Append = "page-cec", ""
	sc.Script = strings.Replace(sc.Script, daemonStart, daemonStart+
		"guest -tag cec exec sh -c 'cat /sys/kernel/debug/ras/cec/action_threshold'\n", 1)
	return sc
}
