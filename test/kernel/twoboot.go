package kernel

import "fmt"

// The two-boot scenario (issue 11): the daemon's state directory lives on
// an ext4 image attached as /dev/vda to two boots of the same kernel. The
// first boot isolates a page and a CPU and kills the daemon; the second is
// a fresh kernel (nothing poisoned, every CPU online) whose daemon starts
// on the same state and, before any error arrives, isolates both again,
// or, with a deny-list added to the policy in between, refuses and alerts.

// TwoBootStatePFN is where the first boot starts looking for a free page
// to retire: 512 MiB into the 1 GiB guest, away from the kernel image low
// down (nokaslr keeps it there) and memblock's top-down early allocations.
const TwoBootStatePFN = 0x20000

// twoBootCommon mounts the state disk and defines $SP for the daemon on
// it. The socket stays in tmpfs: it is per boot.
const twoBootCommon = `mkdir -p /mnt/state
i=0; while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do usleep 100000; i=$((i+1)); done
guest -tag mount exec mount -t ext4 /dev/vda /mnt/state
D=/mnt/state
SP="selfprotect --state $D/sp --socket /tmp/sp.sock"
DLOG=/tmp/daemon.log
`

// twoBootRun starts the daemon with policy file $POLICY and waits until it
// is armed. The source does not matter to what is restored (that comes
// from the store), so the cheaper tracefs path is used: loading the eBPF
// probes parses the kernel's BTF, which under emulation on a loaded host
// took over a minute.
const twoBootRun = `guest -tag daemon-exit stamp-run $DLOG $SP --log-level info run --no-ebpf --config $POLICY &
DAEMON=$!
guest -tag daemon-armed wait-exec 180s $SP status --json
`

// actionsAtLeast OUTCOME N SP... exits 0 once this run of the daemon has
// recorded at least N actions with OUTCOME (status .actions counts the
// outcomes recorded since it started).
const actionsAtLeast = `o=$1; n=$2; shift 2
got=$("$@" status --json | tr -d ' \n' | sed -n 's/.*"actions":{[^}]*"'"$o"'":\([0-9]*\).*/\1/p')
[ -n "$got" ] && [ "$got" -ge "$n" ]
`

// twoBootAlertHook is the deny variant's exec notifier: one line per alert.
const twoBootAlertHook = `echo "$SELFPROTECT_TRANSITION $SELFPROTECT_SUSPECT" >> /tmp/alerts.log
`

// twoBootFirst is boot 1: a free page gets two corrected errors, CPU 2
// five cache errors; once the daemon has recorded both isolations it is
// killed (SIGKILL: no clean stop helps boot 2), and the page's PFN is
// left on the disk for boot 2.
func twoBootFirst() string {
	return twoBootCommon + fmt.Sprintf(`guest -tag free-page free-page %#x $D/page
PFN=$(cat $D/page/pfn); ADDR=$(cat $D/page/addr)
POLICY=/scenario/enforce.yaml
`, TwoBootStatePFN) + twoBootRun + `for i in 1 2; do guest -tag inject-page inject-mem 1 $(printf 0x%x $((ADDR + 0x40))); done
guest -tag page-poisoned wait-poisoned $PFN 30s 10ms
for i in 1 2 3 4 5; do guest -tag inject-cpu2 inject-cache 2; done
guest -tag cpu2-offline wait-exec 30s sh -c '[ "$(cat /sys/devices/system/cpu/cpu2/online)" = 0 ]'
guest -tag recorded wait-exec 30s sh /scenario/actions-at-least.sh isolated 2 $SP
DPID=$($SP status --json | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
kill -9 $DPID; wait $DAEMON
guest -tag faulty exec $SP faulty --all --json
sed 's/^/[daemon] /' $DLOG
sync
guest -tag umount exec umount /mnt/state
`
}

// twoBootSecond is boot 2 on the disk boot 1 left: the kernel's view
// before the daemon starts, then the daemon on the same state with policy
// (a file under /scenario; "@PFN@" in it becomes the retired page's PFN),
// then what it did with no error injected. deny says which outcome to
// wait for: refusals (and their alerts) instead of isolations.
func twoBootSecond(policy string, deny bool) string {
	wait := `guest -tag page-poisoned wait-poisoned $PFN 30s 10ms
guest -tag cpu2-offline wait-exec 30s sh -c '[ "$(cat /sys/devices/system/cpu/cpu2/online)" = 0 ]'
guest -tag recorded wait-exec 30s sh /scenario/actions-at-least.sh isolated 2 $SP
`
	if deny {
		wait = `guest -tag recorded wait-exec 30s sh /scenario/actions-at-least.sh refused 2 $SP
guest -tag alerted wait-exec 30s sh -c '[ "$(grep -c "^refused " /tmp/alerts.log)" -ge 2 ]'
guest -tag alerts exec cat /tmp/alerts.log
`
	}
	return twoBootCommon + `PFN=$(cat $D/page/pfn)
guest -tag kpf-before kpf $PFN
guest -tag cpu2-before cpu-online 2
guest -tag meminfo-before meminfo
sed "s/@PFN@/$PFN/" /scenario/` + policy + ` > /tmp/policy.yaml
POLICY=/tmp/policy.yaml
` + twoBootRun + wait + `guest -tag kpf-after kpf $PFN
guest -tag cpu2-after cpu-online 2
guest -tag meminfo-after meminfo
guest -tag status exec $SP status --json
guest -tag faulty exec $SP faulty --all --json
kill $DAEMON; wait $DAEMON
sed 's/^/[daemon] /' $DLOG
sync
guest -tag umount exec umount /mnt/state
`
}

// twoBootDenyPolicy is the scenario policy with the retired page and CPU 2
// denied, and an exec notifier so the refusals' alerts can be seen.
const twoBootDenyPolicy = `deny:
  cpus: [0, 2]
  pages: [@PFN@]
alerts:
  notifiers:
    - name: hook
      type: exec
      exec: {command: [/bin/sh, /scenario/alert-hook.sh]}
`

func twoBootFiles() map[string][]byte {
	return map[string][]byte{
		"enforce.yaml":        policy("enforce", 2),
		"deny.yaml":           append(policy("enforce", 2), twoBootDenyPolicy...),
		"actions-at-least.sh": []byte(actionsAtLeast),
		"alert-hook.sh":       []byte(twoBootAlertHook),
	}
}

// TwoBootScenarios are the three boots: the first, the second under the
// same policy, and the second with the deny-list (each second boot runs on
// its own copy of the disk the first left). CEC is off as in the cell
// boots, so nobody but the daemon retires the page. no_timer_check: on a
// loaded host the emulated guest is too slow for the kernel's IO-APIC
// timer check, and 6.1 panicked on it ("IO-APIC + timer doesn't work!");
// three boots per cell make that likelier than the cell boots' one.
// nokaslr: Debian's kernels place their own image at a random physical
// address at each boot, and once (6.12, AMD model) the second boot's
// image covered the retired page, which the kernel then refused to
// offline (kpageflags RESERVED, "unhandlable page", EIO): the page the
// first boot chose must be ordinary memory in the second one too.
func TwoBootScenarios() (first, again, denied Scenario) {
	mk := func(name, script string) Scenario {
		return Scenario{Name: name, Append: "ras=cec_disable no_timer_check nokaslr", Files: twoBootFiles(), Script: script}
	}
	return mk("twoboot-1", twoBootFirst()), mk("twoboot-2", twoBootSecond("enforce.yaml", false)),
		mk("twoboot-2-deny", twoBootSecond("deny.yaml", true))
}
