package kernel

import "fmt"

// HandoverArmAfter is how long the hand-over scenario holds the daemon's
// eBPF source back (--test-ebpf-arm-after): long enough for the page's
// first errors and the start of the steady injections to go through
// tracefs alone on a slow host, short enough to keep the boot cheap.
const HandoverArmAfter = "15s"

// HandoverOverlap is how long tracefs keeps reading after eBPF armed
// (--test-handover-after): the two sources overlap for that long (plus up
// to the 1 s health tick), so a hundred or so records, half of them on the
// storm page, are read by both; without it the overlap held 2–8.
const HandoverOverlap = "2s"

// HandoverPeriod is the pause between the scenario's steady injections
// (under emulation each injection costs more: 20 ms gave ~21 errors a
// second), over four CPUs: the few hundred ms in which both sources read
// the tracepoint should hold records. Every HandoverStormEvery-th error
// goes to one page (the second held page), the others each to a page of
// their own: that page gets several records a second, far past the eBPF
// per-page limit (4 a second), so the probes would aggregate its records
// while tracefs still delivers them one by one, and do aggregate them
// once the hand-over is over.
const (
	HandoverPeriod     = "5ms"
	HandoverStormEvery = 2
)

// handoverAfter is how long the steady injections go on after status
// shows the hand-over done: past the overlap's end (handoverGrace, 5 s,
// after tracefs stopped, seen at the next 1 s tick), so the storm page's
// records are aggregated for a few seconds after eBPF's hold is released.
const handoverAfter = 9000000 // µs

// handoverPolicy: three errors on one page soft-offline it, so the held
// page's case is decided by errors from both sources (two through
// tracefs, the third through eBPF); a double count would show there as
// well as in the totals. The storm page, the second held page, is
// soft-offlined by its first three errors, through tracefs; its errors
// go on (mce-inject writes records, not hardware) and are counted. The DIMM rule is off: hundreds of one-error
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
// tracefs alone; steady injections over four CPUs start (every other one
// on the storm page, the rest each on a page of its own) and run while
// eBPF arms and tracefs drains and stands down, and for a while after the
// overlap ended; once they stopped, the held page's third error,
// through eBPF, decides its soft offline (never two injectors at once:
// mce-inject has one record buffer, and a bank write from one injector
// fires the other's half-written record). Then the delivered count is
// compared with what the daemon counted.
func handoverSection() string {
	return section("handover") + "RUNFLAGS=\"--health-interval 1s --test-ebpf-arm-after " + HandoverArmAfter + " --test-handover-after " + HandoverOverlap + "\"\n" +
		holdStart("/tmp/hold-handover", 2) + `
guest trace-start ho kb=4096
guest -tag meminfo-before meminfo
` + daemonStart("handover", "--config /scenario/handover.yaml", "info") + fmt.Sprintf(`
P=$(printf 0x%%x $((ADDR0 + 0x40)))
for i in 1 2; do guest -tag inject-p inject-mem 1 $P; done
guest -tag p-seen wait-exec 30s sh /scenario/received-at-least.sh 2 $SP
guest -tag steady inject-steady 0,1,2,3 $((ADDR0 + 0x100000)) %s /tmp/steady-stop 20000 %d $(printf 0x%%x $((ADDR1 + 0x40))) &
STEADY=$!
guest -tag steady-seen wait-exec 30s sh /scenario/received-at-least.sh 12 $SP
guest -tag during exec $SP status --json
guest -tag handed-over wait-exec 90s sh /scenario/handed-over.sh $SP
usleep %d
touch /tmp/steady-stop
wait $STEADY
guest -tag inject-p inject-mem 1 $P
guest -tag poisoned wait-poisoned $PFN0 30s
guest -tag delivered trace-count ho stable 60s
N=$(grep -c 'mce_record:' /sys/kernel/tracing/instances/ho/trace)
guest -tag settled wait-exec 60s sh /scenario/errors-settled.sh $N $SP
guest -tag status exec $SP status --json
guest -tag kpf-after kpf $PFN0
guest -tag kpf-storm kpf $PFN1
guest -tag meminfo-after meminfo
`, HandoverPeriod, HandoverStormEvery, handoverAfter) + daemonStop + holdRelease
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

// EBPFDeathAfter is when the death scenario's eBPF reader fails
// (--test-ebpf-die-after, counted from when its Run started): some
// seconds into the storm, so its ring buffer and its aggregation maps hold
// records it never read.
const EBPFDeathAfter = "12s"

// fellBack SP... exits 0 once status shows eBPF broken and tracefs
// reading.
const fellBack = `s=$("$@" status --json | tr -d ' \n')
echo "$s" | grep -q '"name":"ebpf","state":"broken"' && echo "$s" | grep -q '"name":"tracefs","state":"armed"'
`

// ebpfDeathSection starts the daemon with eBPF, storms the held page
// among steady errors (as the hand-over scenario), and has the eBPF
// reader fail in the middle: the daemon holds its aggregation, arms
// tracefs, then salvages what the dead reader still holds. An independent
// trace instance counts what the tracepoint delivered.
func ebpfDeathSection() string {
	return section("ebpf-death") + "RUNFLAGS=\"--health-interval 1s --test-ebpf-die-after " + EBPFDeathAfter + "\"\n" +
		holdStart("/tmp/hold-death", 1) + `
guest trace-start hd kb=4096
guest -tag meminfo-before meminfo
` + daemonStart("ebpf-death", "--config /scenario/handover.yaml", "info") + fmt.Sprintf(`
guest -tag steady inject-steady 0,1,2,3 $((ADDR0 + 0x100000)) %s /tmp/steady-stop 20000 %d $(printf 0x%%x $((ADDR0 + 0x40))) &
STEADY=$!
guest -tag steady-seen wait-exec 30s sh /scenario/received-at-least.sh 12 $SP
guest -tag during exec $SP status --json
guest -tag fell-back wait-exec 90s sh /scenario/fell-back.sh $SP
usleep 3000000
touch /tmp/steady-stop
wait $STEADY
guest -tag delivered trace-count hd stable 60s
N=$(grep -c 'mce_record:' /sys/kernel/tracing/instances/hd/trace)
guest -tag settled wait-exec 60s sh /scenario/errors-settled.sh $N $SP
guest -tag status exec $SP status --json
guest -tag kpf-after kpf $PFN0
guest -tag meminfo-after meminfo
`, HandoverPeriod, HandoverStormEvery) + daemonStop + holdRelease
}

// EBPFDeathScenario is the eBPF reader dying in a storm, one boot per cell.
func EBPFDeathScenario() Scenario {
	return Scenario{
		Name:   "ebpf-death",
		Append: "ras=cec_disable",
		Files: map[string][]byte{
			"handover.yaml":        []byte(handoverPolicy),
			"fell-back.sh":         []byte(fellBack),
			"errors-settled.sh":    []byte(errorsSettled),
			"received-at-least.sh": []byte(receivedAtLeast),
		},
		Script: ebpfDeathSection(),
	}
}
