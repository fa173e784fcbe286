package kernel

import "fmt"

// HandoverArmAfter is how long the hand-over scenario holds the daemon's
// eBPF source back (--test-ebpf-arm-after): long enough for the page's
// first errors and the start of the steady injections to go through
// tracefs alone on a slow host, short enough to keep the boot cheap.
const HandoverArmAfter = "15s"

// HandoverPeriod is the pause between the scenario's steady injections
// (under emulation each injection costs more: 20 ms gave ~21 errors a
// second), over four CPUs, one page each: the few hundred ms in which
// both sources read the tracepoint should hold records, and no page rule
// or eBPF per-page limit is reached.
const HandoverPeriod = "5ms"

// handoverPolicy: three errors on one page soft-offline it, so the held
// page's case is decided by errors from both sources (two through
// tracefs, the third through eBPF); a double count would show there as
// well as in the totals. The DIMM rule is off: hundreds of one-error
// pages are this scenario's load, not a failing DIMM.
const handoverPolicy = `mode: enforce
rules:
  page: {enabled: true, threshold: 3, window: 24h}
  dimm: {enabled: false}
`

// handedOver SP... exits 0 once status shows eBPF armed and tracefs
// standing by.
const handedOver = `s=$("$@" status --json | tr -d ' \n')
echo "$s" | grep -q '"name":"ebpf","state":"armed"' && echo "$s" | grep -q '"name":"tracefs","state":"standby"'
`

// errorsSettled N SP... exits 0 once the daemon counts at least N errors
// and the count did not move for a second: every record the tracepoint
// delivered has reached it, and a double count would have shown.
const errorsSettled = `n=$1; shift
a=$("$@" status --json | sed -n 's/^ *"errors": *\([0-9]*\).*/\1/p' | head -1)
[ -n "$a" ] && [ "$a" -ge "$n" ] || exit 1
usleep 1000000
b=$("$@" status --json | sed -n 's/^ *"errors": *\([0-9]*\).*/\1/p' | head -1)
[ "$a" = "$b" ]
`

// handoverSection starts the daemon with eBPF held back, so tracefs reads
// the tracepoints first. An independent trace instance counts every
// mce_record the kernel delivers. Two errors on the held page go through
// tracefs alone; steady injections over four CPUs start (each on a page of
// its own) and run while eBPF arms and tracefs drains and stands down, and
// for a while after; once they stopped, the held page's third error,
// through eBPF, decides its soft offline (never two injectors at once:
// mce-inject has one record buffer, and a bank write from one injector
// fires the other's half-written record). Then the delivered count is
// compared with what the daemon counted.
func handoverSection() string {
	return section("handover") + "RUNFLAGS=\"--health-interval 1s --test-ebpf-arm-after " + HandoverArmAfter + "\"\n" +
		holdStart("/tmp/hold-handover", 1) + `
guest trace-start ho kb=4096
guest -tag meminfo-before meminfo
` + daemonStart("handover", "--config /scenario/handover.yaml", "info") + fmt.Sprintf(`
P=$(printf 0x%%x $((ADDR0 + 0x40)))
for i in 1 2; do guest -tag inject-p inject-mem 1 $P; done
guest -tag p-seen wait-exec 30s sh /scenario/received-at-least.sh 2 $SP
guest -tag steady inject-steady 0,1,2,3 $((ADDR0 + 0x100000)) %s /tmp/steady-stop 20000 &
STEADY=$!
guest -tag steady-seen wait-exec 30s sh /scenario/received-at-least.sh 12 $SP
guest -tag during exec $SP status --json
guest -tag handed-over wait-exec 90s sh /scenario/handed-over.sh $SP
usleep 2000000
touch /tmp/steady-stop
wait $STEADY
guest -tag inject-p inject-mem 1 $P
guest -tag poisoned wait-poisoned $PFN0 30s
guest -tag delivered trace-count ho stable 60s
N=$(grep -c 'mce_record:' /sys/kernel/tracing/instances/ho/trace)
guest -tag settled wait-exec 60s sh /scenario/errors-settled.sh $N $SP
guest -tag status exec $SP status --json
guest -tag kpf-after kpf $PFN0
guest -tag meminfo-after meminfo
`, HandoverPeriod) + daemonStop + holdRelease
}

// HandoverScenario is the hand-over on a real kernel, one boot per cell.
func HandoverScenario() Scenario {
	return Scenario{
		Name:   "handover",
		Append: "ras=cec_disable",
		Files: map[string][]byte{
			"handover.yaml":        []byte(handoverPolicy),
			"handed-over.sh":       []byte(handedOver),
			"errors-settled.sh":    []byte(errorsSettled),
			"received-at-least.sh": []byte(receivedAtLeast),
		},
		Script: handoverSection(),
	}
}
