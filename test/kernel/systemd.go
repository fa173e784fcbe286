package kernel

import (
	"fmt"
	"os"
)

// SystemdScenario boots the guest into a Debian root (DebianRoot) on its
// virtio disk with the package installed, as an image build leaves it:
// the unit enabled, never started by dpkg. Debian's systemd starts it at
// boot with every setting of the shipped unit, which the rest of the suite
// only reproduces (capabilities, file-system and system-call sandbox);
// systemdBootTest then checks it from beside it. CEC is off so that the
// daemon does the isolating.
func SystemdScenario() Scenario {
	return Scenario{Name: "systemd", Append: "ras=cec_disable", SwitchRoot: "/dev/vda"}
}

// systemdWatchdog shortens the unit's watchdog for the scenario (a drop-in,
// as an administrator would): the daemon pings at half of whatever
// WATCHDOG_USEC systemd gives it, so a boot of a minute can see several
// periods pass, where the shipped 30 s would need minutes. 8 s, not less:
// on a loaded host an emulated guest's timers fire late, and a ping a few
// seconds late must not read as a hung daemon.
const systemdWatchdog = 8

// SystemdImageFor is the scenario's disk contents besides the root: the
// package, the guest helper, and the boot-test unit that runs
// systemdBootTest once the package's unit has been started.
func SystemdImageFor(deb, guest string) (SystemdImage, error) {
	bin, err := os.ReadFile(guest)
	if err != nil {
		return SystemdImage{}, fmt.Errorf("reading the guest helper: %w", err)
	}
	pkg, err := os.ReadFile(deb)
	if err != nil {
		return SystemdImage{}, fmt.Errorf("reading the package for the upgrade step: %w", err)
	}
	return SystemdImage{
		Deb: deb,
		Files: map[string][]byte{
			"/usr/local/bin/guest":                   bin,
			"/var/cache/selfprotect-boottest.deb":    pkg,
			"/usr/local/lib/selfprotect-boottest.sh": []byte(systemdBootTest),
			"/etc/systemd/system/selfprotect-boottest.service": []byte(`[Unit]
Description=selfprotect kernel suite: the package's unit under systemd, checked from beside it
After=selfprotect.service

[Service]
Type=oneshot
ExecStart=/bin/sh /usr/local/lib/selfprotect-boottest.sh
`),
			"/etc/systemd/system/selfprotect.service.d/boottest-watchdog.conf": []byte(fmt.Sprintf("[Service]\nWatchdogSec=%ds\n", systemdWatchdog)),
			"/etc/hostname": []byte("sp-boottest\n"),
			// Something for ProtectKernelModules to hide: a root without
			// a kernel package has no module tree.
			"/usr/lib/modules/sandbox-probe/README": []byte("The kernel suite's sandbox probe lists this tree; the daemon's unit must hide it.\n"),
		},
		Modes:  map[string]os.FileMode{"/usr/local/bin/guest": 0o755, "/usr/local/lib/selfprotect-boottest.sh": 0o755},
		Enable: []string{"selfprotect-boottest.service"},
		// No logins on a test guest, and no udev to announce the console
		// device a getty would wait 90 s for; logind needs D-Bus, which
		// minbase lacks.
		Mask: []string{"serial-getty@ttyS0.service", "getty@tty1.service", "systemd-logind.service"},
	}, nil
}

// systemdBootTest runs in the booted guest once systemd has started the
// package's unit (selfprotect-boottest.service, after it). Every step
// prints a @@RESULT line on the console; the guest powers off at the end.
// The watchdog step waits two and a half of the drop-in's periods: a
// daemon that stopped pinging would have been killed (SIGABRT) and
// restarted by then. Then a reload (SIGHUP), and a crash: SIGKILL, which
// Restart=on-failure answers with a new daemon that finds its case in the
// state directory. Then an upgrade: the package installed again over
// itself, whose postinst restarts the daemon on the new binary, which
// comes back armed with the case.
var systemdBootTest = fmt.Sprintf(`#!/bin/sh
exec >/dev/console 2>&1
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
U=selfprotect.service
guest -tag unit-active wait-exec 120s systemctl is-active --quiet $U
guest -tag status wait-exec 60s selfprotect status
guest -tag status-json exec selfprotect status --json
guest -tag unit-show exec systemctl show $U -p Type -p ActiveState -p SubState -p NRestarts -p WatchdogUSec -p MemoryMax -p TimerSlackNSec -p MainPID
PID=$(systemctl show -p MainPID --value $U)
guest -tag daemon-proc proc-status $PID
guest -tag daemon-dev exec ls /proc/$PID/root/dev
same() { [ "$(readlink /proc/$PID/ns/$1)" = "$(readlink /proc/1/ns/$1)" ] && echo yes || echo no; }
{
  echo "umask=$(awk '/^Umask:/ {print $2}' /proc/$PID/status)"
  echo "uts_shared=$(same uts)"
  echo "mnt_shared=$(same mnt)"
  echo "proc_options=$(awk '$5 == "/proc" {print $NF}' /proc/$PID/mountinfo)"
} > /tmp/daemon-ns
guest -tag daemon-ns exec cat /tmp/daemon-ns
guest -tag memory-max exec cat /sys/fs/cgroup/system.slice/$U/memory.max

# The sandbox setting by setting: a unit with every line of the shipped
# one but those that start and supervise the daemon (and directories of
# its own: a oneshot's stop would remove the daemon's runtime directory)
# runs the probes under the daemon's settings; as plain root, beside it,
# each probe shows it could succeed.
PROBE=selfprotect-sandbox-probe.service
sed -e '/^\(Type\|ExecStart\|ExecReload\|Restart\|RestartSec\|WatchdogSec\)=/d' \
    -e 's/^\(State\|Runtime\)Directory=selfprotect$/\1Directory=selfprotect-sandbox-probe/' \
    -e '/^\[Install\]/,$d' \
    -e 's|^\[Service\]$|[Service]\nType=oneshot\nExecStart=/usr/local/bin/guest -tag sandbox-probe sandbox-probe|' \
    /lib/systemd/system/$U > /etc/systemd/system/$PROBE
systemctl daemon-reload
guest -tag sandbox-probe-unit exec systemctl start $PROBE
guest -tag sandbox-probe-journal wait-exec 30s sh -c "journalctl -u $PROBE -o cat --no-pager | grep -q '^@@RESULT'"
journalctl -u $PROBE -o cat --no-pager | grep '^@@RESULT' | tail -n 1
guest -tag sandbox-root sandbox-probe

H=/tmp/hold
guest -tag hold hold 1 $H &
HOLD=$!
guest -tag hold-wait wait-exec 60s test -e $H/ready
A=$(printf 0x%%x $(( $(cat $H/addr0) + 0x40 ))); P=$(cat $H/pfn0)
guest -tag first inject-mem 1 $A
sleep 0.3
guest -tag deciding inject-mem 1 $A
guest -tag poisoned wait-poisoned $P 60s
guest -tag faulty wait-exec 30s sh -c "selfprotect faulty --json | grep -q page:$P"
touch $H/release
wait $HOLD

sleep %d
guest -tag after-watchdog exec systemctl show $U -p ActiveState -p NRestarts -p MainPID
guest -tag journal exec sh -c "journalctl -u $U -o cat --no-pager | grep -c ."

guest -tag reload exec systemctl reload $U
guest -tag after-reload wait-exec 30s selfprotect status
kill -9 $PID
export U PID
guest -tag restarted wait-exec 60s sh -c 'p=$(systemctl show -p MainPID --value $U); [ "$p" != 0 ] && [ "$p" != "$PID" ] && systemctl is-active --quiet $U'
guest -tag status-after-restart wait-exec 60s selfprotect status
guest -tag faulty-after-restart exec sh -c "selfprotect faulty --json | grep -q page:$P"
guest -tag after-restart exec systemctl show $U -p ActiveState -p NRestarts -p MainPID
PID=$(systemctl show -p MainPID --value $U)
guest -tag upgrade exec dpkg -i /var/cache/selfprotect-boottest.deb
guest -tag upgraded wait-exec 60s sh -c 'p=$(systemctl show -p MainPID --value $U); [ "$p" != 0 ] && [ "$p" != "$PID" ] && systemctl is-active --quiet $U'
guest -tag status-after-upgrade wait-exec 60s selfprotect status
guest -tag faulty-after-upgrade exec sh -c "selfprotect faulty --json | grep -q page:$P"
systemctl stop $U
guest -tag stopped exec systemctl show $U -p ActiveState -p Result -p ExecMainCode -p ExecMainStatus
echo "@@DONE rc=0 uptime=$(cut -d' ' -f1 /proc/uptime)"
systemctl --no-block --ignore-inhibitors poweroff
`, systemdWatchdog*5/2)
