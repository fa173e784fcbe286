package kernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDaemonUnderSystemd installs the Debian package into a Debian root
// and boots it under Debian's systemd on every selected cell: the shipped
// unit as systemd applies it, which the rest of the suite reproduces with
// setpriv, a mount namespace and a seccomp filter of our own. systemd must
// report the daemon ready (Type=notify) and healthy with its eBPF source
// armed; the daemon must hold exactly the unit's privileges (the same
// checks as TestDaemonHardened), see none of the devices PrivateDevices
// hides, sit under MemoryMax, isolate a page two injected errors decide,
// keep pinging the watchdog, log to the journal, take a reload, come back
// after a SIGKILL with its case, and after an upgrade (the package
// installed again over itself), and stop cleanly. The package comes from
// SELFPROTECT_DEB (make kernel-test builds it); the root is debootstrapped
// once into the cache.
func TestDaemonUnderSystemd(t *testing.T) {
	requireKernelGate(t)
	deb := os.Getenv("SELFPROTECT_DEB")
	require.NotEmpty(t, deb, "SELFPROTECT_DEB must name the package to install (make kernel-test builds it with make deb)")
	require.FileExists(t, deb)
	forEachCell(t, false, func(t *testing.T, lab *Lab, cell Cell) {
		systemdBoot(t, lab, cell, deb)
	})
}

// systemdBoot boots one cell into the Debian root with deb installed and
// checks what the boot test reported.
func systemdBoot(t *testing.T, lab *Lab, cell Cell, deb string) {
	ctx := context.Background()
	// The first cell debootstraps; the others wait on its lock and reuse it.
	root, err := DebianRoot(ctx, lab.CacheDir)
	require.NoError(t, err)
	img, err := SystemdImageFor(deb, lab.Guest)
	require.NoError(t, err)
	disk := filepath.Join(t.TempDir(), "root.img")
	require.NoError(t, MakeSystemdDisk(ctx, root, disk, img))
	sc := SystemdScenario()
	run, err := lab.Run(ctx, cell, sc, RunOptions{Disk: disk, Timeout: 10 * time.Minute})
	rs := runResults(t, cell, sc, run, err)

	for _, step := range []string{"switch-root", "unit-active", "status", "status-json", "unit-show", "daemon-proc", "daemon-dev", "daemon-ns", "memory-max",
		"sandbox-probe-unit", "sandbox-probe-journal", "sandbox-probe", "sandbox-root",
		"hold-wait", "first", "deciding", "poisoned", "faulty", "hold", "after-watchdog", "journal",
		"reload", "after-reload", "restarted", "status-after-restart", "faulty-after-restart", "after-restart",
		"upgrade", "upgraded", "status-after-upgrade", "faulty-after-upgrade", "stopped"} {
		r := only(t, rs, step)
		require.True(t, r.OK, "step %s: %s %v", step, r.Error, r.Data)
	}

	// Started and ready by systemd's own account, with the unit's settings.
	show := showProperties(only(t, rs, "unit-show"))
	require.Equal(t, "notify", show["Type"], "%v", show)
	require.Equal(t, "active", show["ActiveState"], "%v", show)
	require.Equal(t, "running", show["SubState"], "%v", show)
	require.Equal(t, "0", show["NRestarts"], "%v", show)
	require.Equal(t, fmt.Sprintf("%ds", systemdWatchdog), show["WatchdogUSec"], "the drop-in's watchdog: %v", show)
	require.Equal(t, "268435456", show["MemoryMax"], "%v", show)
	require.Equal(t, "1000000", show["TimerSlackNSec"], "%v", show)
	// A bare number is carried as JSON.
	memMax, _ := only(t, rs, "memory-max").Number("json")
	require.Equal(t, 268435456.0, memMax, "the cgroup's memory.max: %v", only(t, rs, "memory-max").Data)

	// The eBPF source loads and attaches under the unit's capabilities and
	// system-call filter, on 6.1 as on 6.12.
	status, _ := only(t, rs, "status-json").Data["json"].(map[string]any)
	sources, _ := status["sources"].([]any)
	states := map[string]string{}
	for _, x := range sources {
		if src, ok := x.(map[string]any); ok {
			states[fmt.Sprint(src["name"])] = fmt.Sprint(src["state"])
		}
	}
	require.Equal(t, "armed", states["ebpf"], "sources under the unit: %v", states)

	// The privileges, file-system view and timer slack systemd gave the
	// daemon pass the checks the reproduced launch passes.
	hardenedChecks(t, rs, lab.Hardening)
	proc := only(t, rs, "daemon-proc")
	t.Logf("%s under systemd: pid %s CapEff %s NoNewPrivs %v, threads' timer slack (ns) %s", cell, show["MainPID"],
		proc.String("capeff"), proc.Data["nonewprivs"], proc.String("thread_timerslack_ns"))

	// Nothing writable but what the unit names, PrivateTmp's /tmp and
	// /var/tmp, and the API file systems systemd leaves writable (the /proc
	// mount, the pseudo-file systems of the private /dev). Debian 12's
	// systemd left /run writable under ProtectSystem=strict until the unit
	// said ReadOnlyPaths=/run.
	allowed := lab.Hardening.WritablePaths()
	for _, p := range []string{"/proc", "/tmp", "/var/tmp", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/hugepages"} {
		allowed[p] = true
	}
	mounts, _ := proc.Data["mounts"].(map[string]any)
	for p, mode := range mounts {
		if _, ok := allowed[p]; mode == "rw" && !ok {
			t.Errorf("%s is writable in the daemon's namespace; its mounts: %v", p, mounts)
		}
	}

	// ProtectHome, ProtectKernelLogs: the homes and the kernel log are
	// covered by inaccessible read-only mounts. UMask, ProtectHostname,
	// PrivateMounts, ProtectProc: from /proc, outside the daemon.
	for _, p := range []string{"/home", "/root", "/run/user", "/proc/kmsg"} {
		require.Equal(t, "ro", mounts[p], "%s covered read-only; mounts %v", p, mounts)
	}
	ns := showProperties(only(t, rs, "daemon-ns"))
	require.Equal(t, "0077", ns["umask"], "UMask: %v", ns)
	require.Equal(t, "no", ns["uts_shared"], "ProtectHostname: a UTS namespace of its own: %v", ns)
	require.Equal(t, "no", ns["mnt_shared"], "a mount namespace of its own: %v", ns)
	require.Contains(t, ns["proc_options"], "hidepid=invisible", "ProtectProc=invisible: %v", ns)

	// PrivateDevices: a /dev of pseudo-devices only.
	dev := strings.Fields(only(t, rs, "daemon-dev").String("stdout"))
	require.Contains(t, dev, "null", "the daemon's /dev was listed: %v", dev)
	for _, hidden := range []string{"vda", "ttyS0", "mem", "kmsg", "port"} {
		require.NotContains(t, dev, hidden, "PrivateDevices hides %s: the daemon's /dev is %v", hidden, dev)
	}

	// The settings no view from outside shows, tried from inside.
	for _, problem := range sandboxRefusals(only(t, rs, "sandbox-probe"), only(t, rs, "sandbox-root")) {
		t.Error(problem)
	}

	// The watchdog: periods later, still the same process.
	after := showProperties(only(t, rs, "after-watchdog"))
	require.Equal(t, "active", after["ActiveState"], "%v", after)
	require.Equal(t, "0", after["NRestarts"], "no watchdog kill and restart: %v", after)
	require.Equal(t, show["MainPID"], after["MainPID"], "the same daemon process")

	lines, _ := only(t, rs, "journal").Number("json")
	require.Positive(t, lines, "the daemon's lines are in the journal: %v", only(t, rs, "journal").Data)

	// A crash: systemd restarts the daemon (Restart=on-failure), which
	// comes back armed with the case it had.
	restarted := showProperties(only(t, rs, "after-restart"))
	require.Equal(t, "active", restarted["ActiveState"], "%v", restarted)
	require.Equal(t, "1", restarted["NRestarts"], "one restart, after the SIGKILL: %v", restarted)
	require.NotEqual(t, show["MainPID"], restarted["MainPID"], "a new daemon process")

	stopped := showProperties(only(t, rs, "stopped"))
	require.Equal(t, "inactive", stopped["ActiveState"], "%v", stopped)
	require.Equal(t, "success", stopped["Result"], "%v", stopped)
	require.Equal(t, "0", stopped["ExecMainStatus"], "a clean exit on SIGTERM: %v", stopped)
}

// showProperties reads `systemctl show`'s KEY=VALUE lines from a step's
// output.
func showProperties(r Result) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(r.String("stdout"), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			out[k] = v
		}
	}
	return out
}

func TestShowProperties(t *testing.T) {
	r := Result{Step: "unit-show", OK: true, Data: map[string]any{"stdout": "Type=notify\nActiveState=active\nExecMainStatus=0\nStatusText=armed: a=b\n\n"}}
	require.Equal(t, map[string]string{"Type": "notify", "ActiveState": "active", "ExecMainStatus": "0", "StatusText": "armed: a=b"}, showProperties(r))
}

// sandboxRefusal is what one probe of guest sandbox-probe must get under
// the daemon's unit (inside) and as plain root (outside): the errno a
// setting answers with, and success or the errno of the probe's
// deliberately bad arguments, past the privilege checks.
type sandboxRefusal struct {
	probe, setting, inside, outside string
}

var sandboxExpected = []sandboxRefusal{
	{"finit_module", "ProtectKernelModules", "EPERM", "EBADF"},
	// An inaccessible mount over the tree: root without CAP_DAC_* is
	// refused.
	{"read_modules_dir", "ProtectKernelModules", "EACCES", "ok"},
	{"clock_settime", "ProtectClock", "EPERM", "ok"},
	{"cgroup_mkdir", "ProtectControlGroups", "EROFS", "ok"},
	{"unshare_uts", "RestrictNamespaces", "EPERM", "ok"},
	{"sched_fifo", "RestrictRealtime", "EPERM", "ok"},
	{"chmod_setuid", "RestrictSUIDSGID", "EPERM", "ok"},
	{"personality", "LockPersonality", "EPERM", "ok"},
	{"mmap_write_exec", "MemoryDenyWriteExecute", "EPERM", "ok"},
	{"netlink_socket", "RestrictAddressFamilies", "EAFNOSUPPORT", "ok"},
	{"sethostname", "ProtectHostname", "EPERM", "ok"},
	{"syslog", "ProtectKernelLogs", "EPERM", "ok"},
	{"reboot", "SystemCallFilter (no @reboot)", "EPERM", "EINVAL"},
	{"swapon", "SystemCallFilter (no @swap)", "EPERM", "ENOENT"},
	{"mount", "SystemCallFilter (no @mount)", "EPERM", "ENOENT"},
	{"ioperm", "SystemCallFilter (no @raw-io)", "EPERM", "ok"},
	{"i386_syscall", "SystemCallArchitectures", "killed by SIGSYS", "ok"},
}

// sandboxRefusals compares the probes' results under the unit and as root
// with sandboxExpected, and says what differs; a probe with no
// expectation is a problem too, so that a new probe cannot pass unread.
func sandboxRefusals(inside, outside Result) []string {
	var problems []string
	known := map[string]bool{}
	for _, e := range sandboxExpected {
		known[e.probe] = true
		got, root := inside.String(e.probe), outside.String(e.probe)
		if got != e.inside {
			problems = append(problems, fmt.Sprintf("%s: %s under the daemon's unit got %q, want %q (refused)", e.setting, e.probe, got, e.inside))
		}
		if root != e.outside {
			problems = append(problems, fmt.Sprintf("%s: %s as plain root got %q, want %q: the probe cannot tell the unit's refusal from its own failure", e.setting, e.probe, root, e.outside))
		}
	}
	for _, r := range []Result{inside, outside} {
		for probe := range r.Data {
			if !known[probe] {
				problems = append(problems, fmt.Sprintf("step %s: probe %q has no expectation", r.Step, probe))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// A unit missing a setting lets its probe through; a probe that fails as
// root the same way it fails under the unit proves nothing; an unknown
// probe is not let pass.
func TestSandboxRefusals(t *testing.T) {
	results := func(step string, pick func(sandboxRefusal) string) Result {
		r := Result{Step: step, OK: true, Data: map[string]any{}}
		for _, e := range sandboxExpected {
			r.Data[e.probe] = pick(e)
		}
		return r
	}
	inside := func() Result { return results("sandbox-probe", func(e sandboxRefusal) string { return e.inside }) }
	outside := func() Result { return results("sandbox-root", func(e sandboxRefusal) string { return e.outside }) }
	require.Empty(t, sandboxRefusals(inside(), outside()))

	noLock := inside()
	noLock.Data["personality"] = "ok"
	require.Equal(t, []string{`LockPersonality: personality under the daemon's unit got "ok", want "EPERM" (refused)`}, sandboxRefusals(noLock, outside()))

	blind := outside()
	blind.Data["unshare_uts"] = "EPERM"
	problems := sandboxRefusals(inside(), blind)
	require.Len(t, problems, 1)
	require.Contains(t, problems[0], "RestrictNamespaces: unshare_uts as plain root")

	extra := inside()
	extra.Data["kexec"] = "EPERM"
	require.Equal(t, []string{`step sandbox-probe: probe "kexec" has no expectation`}, sandboxRefusals(extra, outside()))

	missing := inside()
	delete(missing.Data, "mount")
	require.Len(t, sandboxRefusals(missing, outside()), 1)
}
