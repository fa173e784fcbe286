package kernel

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseHardening(t *testing.T) {
	for _, tc := range []struct {
		name    string
		unit    string
		want    Hardening
		wantErr string
	}{
		{
			name: "the shipped shape",
			unit: "[Unit]\nDescription=x\n[Service]\n# comment\nCapabilityBoundingSet=CAP_SYS_ADMIN CAP_BPF CAP_PERFMON\nAmbientCapabilities=\nNoNewPrivileges=yes\n",
			want: Hardening{Bounding: []string{"CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON"}, NoNewPrivileges: true},
		},
		{
			name: "repeated lines accumulate, an empty one resets",
			unit: "[Service]\nCapabilityBoundingSet=CAP_KILL\nCapabilityBoundingSet=\nCapabilityBoundingSet=CAP_BPF \\\n  CAP_PERFMON\nCapabilityBoundingSet=CAP_BPF CAP_SYS_ADMIN\nAmbientCapabilities=CAP_BPF\nNoNewPrivileges=false\n",
			want: Hardening{Bounding: []string{"CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"}, Ambient: []string{"CAP_BPF"}},
		},
		{
			name: "settings outside [Service] are not the service's",
			unit: "[Install]\nCapabilityBoundingSet=CAP_KILL\n[Service]\nCapabilityBoundingSet=CAP_BPF\n",
			want: Hardening{Bounding: []string{"CAP_BPF"}},
		},
		{name: "inverted list", unit: "[Service]\nCapabilityBoundingSet=~CAP_SYS_BOOT\n", wantErr: "inverted"},
		{name: "unknown capability", unit: "[Service]\nCapabilityBoundingSet=CAP_SYS_ADMN\n", wantErr: `line 2: CapabilityBoundingSet: unknown capability "CAP_SYS_ADMN"`},
		{name: "non-root user", unit: "[Service]\nUser=selfprotect\n", wantErr: "as root only"},
		{name: "ambient outside the bounding set", unit: "[Service]\nCapabilityBoundingSet=CAP_BPF\nAmbientCapabilities=CAP_SYS_ADMIN\n", wantErr: "CAP_SYS_ADMIN is outside"},
		{name: "bad boolean", unit: "[Service]\nNoNewPrivileges=perhaps\n", wantErr: `line 2: NoNewPrivileges: not a boolean: "perhaps"`},
		{name: "no equals sign", unit: "[Service]\nNoNewPrivileges\n", wantErr: "line 2: no '='"},
		{name: "timer slack in ms", unit: "[Service]\nTimerSlackNSec=1ms\n", want: Hardening{TimerSlack: time.Millisecond}},
		{name: "timer slack, bare ns and a sum", unit: "[Service]\nTimerSlackNSec=2000\nTimerSlackNSec=1s 500us\n", want: Hardening{TimerSlack: time.Second + 500*time.Microsecond}},
		{name: "timer slack reset", unit: "[Service]\nTimerSlackNSec=1ms\nTimerSlackNSec=\n", want: Hardening{}},
		{name: "timer slack unit unknown", unit: "[Service]\nTimerSlackNSec=1 fortnight\n", wantErr: `line 2: TimerSlackNSec: not a time span the guest reads: "1 fortnight"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHardening(strings.NewReader(tc.unit))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestHardeningMasksAndSetpriv(t *testing.T) {
	h := Hardening{Bounding: []string{"CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON"}, Ambient: []string{"CAP_BPF"}, NoNewPrivileges: true}
	// 21, 39 and 38: the bits /proc/PID/status shows for these three.
	require.Equal(t, uint64(1<<21|1<<39|1<<38), h.BoundingMask())
	require.Equal(t, uint64(1<<39), h.AmbientMask())
	require.Equal(t, []string{"setpriv", "--bounding-set", "-all,+sys_admin,+bpf,+perfmon",
		"--inh-caps", "-all,+bpf", "--ambient-caps", "-all,+bpf", "--no-new-privs", "--"}, h.SetprivArgs())
	require.NotContains(t, Hardening{}.SetprivArgs(), "--no-new-privs")
}

// The shipped unit parses, keeps some capabilities and sets
// NoNewPrivileges; which ones is the README's and packaging's business
// (packaging/unit_test.go), not this harness's.
func TestShippedUnitHardening(t *testing.T) {
	h, err := LoadHardening(UnitFile)
	require.NoError(t, err)
	require.NotEmpty(t, h.Bounding)
	require.True(t, h.NoNewPrivileges)
	_, err = LoadHardening(filepath.Join(t.TempDir(), "none.service"))
	require.ErrorContains(t, err, "reading the unit")
}

// On the host setpriv (util-linux) gives a command exactly the masks the
// guest checks for. Root only: dropping the bounding set needs CAP_SETPCAP.
func TestSetprivGivesTheMasks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setpriv --bounding-set needs root")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv (util-linux) on this host")
	}
	h, err := LoadHardening(UnitFile)
	require.NoError(t, err)
	args := append(h.SetprivArgs(), "cat", "/proc/self/status")
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	status := string(out)
	for _, k := range []string{"CapBnd", "CapPrm", "CapEff"} {
		require.Contains(t, status, fmt.Sprintf("%s:\t%016x\n", k, h.BoundingMask()))
	}
	require.Contains(t, status, fmt.Sprintf("CapAmb:\t%016x\n", h.AmbientMask()))
	require.Contains(t, status, "NoNewPrivs:\t1\n")
}

// A dynamically linked host program copied with its closure runs in a
// root holding nothing else: the same files the initramfs gets.
func TestDynamicToolRunsAlone(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv (util-linux) on this host")
	}
	files, err := dynamicClosure(setpriv)
	require.NoError(t, err)
	require.Contains(t, files, guestLibraryDir+"/libc.so.6")

	a := NewArchive()
	require.NoError(t, addDynamic(a, setpriv))
	var buf bytes.Buffer
	_, err = a.WriteTo(&buf)
	require.NoError(t, err)
	root := t.TempDir()
	names := map[string]bool{}
	for _, m := range readNewc(t, buf.Bytes()) {
		names[m.name] = true
		if m.mode&0o170000 == 0o100000 {
			require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(root, m.name)), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(root, m.name), []byte(m.data), 0o755))
		}
	}
	require.True(t, names["bin/setpriv"], "%v", names)
	require.True(t, names[guestLibraryDir+"/libc.so.6"], "%v", names)
	if isStaticELF(BusyboxPath) {
		_, err = dynamicClosure(BusyboxPath)
		require.ErrorContains(t, err, "is static")
	}

	if os.Geteuid() != 0 {
		t.Skip("running it in a bare root needs chroot (root)")
	}
	out, err := exec.Command("chroot", root, "/bin/setpriv", "--dump").CombinedOutput()
	require.NoError(t, err, "setpriv in a root with only its closure: %s", out)
	require.Contains(t, string(out), "Capability bounding set:")

}

func TestSandboxArgs(t *testing.T) {
	h, err := ParseHardening(strings.NewReader("[Service]\nStateDirectory=selfprotect\nRuntimeDirectory=selfprotect\n" +
		"ProtectSystem=strict\nProtectKernelTunables=yes\nPrivateTmp=yes\nCapabilityBoundingSet=CAP_SYS_ADMIN\n" +
		"ReadWritePaths=-/sys/devices/system/memory/soft_offline_page\nReadWritePaths=/sys/devices/system/cpu\n"))
	require.NoError(t, err)
	args := h.SandboxArgs()
	require.Equal(t, []string{"guest", "sandbox", "mkdir=/var/lib/selfprotect", "mkdir=/run/selfprotect", "ro=/", "rw=/dev", "rw=/proc", "ro=/sys"}, args[:8])
	require.Equal(t, []string{"tmpfs=/tmp", "rw=/var/lib/selfprotect", "rw=/run/selfprotect",
		"rw=-/sys/devices/system/memory/soft_offline_page", "rw=/sys/devices/system/cpu", "--"}, args[len(args)-6:])
	require.Contains(t, args, "ro=-/proc/sys")
	require.Equal(t, map[string]bool{"/var/lib/selfprotect": false, "/run/selfprotect": false,
		"/sys/devices/system/memory/soft_offline_page": true, "/sys/devices/system/cpu": false}, h.WritablePaths())
	launch, err := h.Launch(SyscallTables{})
	require.NoError(t, err)
	require.Equal(t, "guest", launch[0])
	require.Equal(t, h.SetprivArgs(), launch[len(args):], "setpriv runs inside the sandbox; no filter in this unit")

	// The timer slack is set after the sandbox (which execs) and before
	// setpriv, and kept by every exec after it.
	h.TimerSlack = time.Millisecond
	launch, err = h.Launch(SyscallTables{})
	require.NoError(t, err)
	require.Equal(t, []string{"guest", "timerslack", "1000000", "--"}, launch[len(args):len(args)+4])
	require.Equal(t, h.SetprivArgs(), launch[len(args)+4:])
	require.Nil(t, Hardening{}.TimerSlackArgs())

	// Without a read-only file system there is no sandbox to enter.
	require.Nil(t, Hardening{ReadWritePaths: []string{"/x"}}.SandboxArgs())
	require.Empty(t, Hardening{ReadWritePaths: []string{"/x"}}.WritablePaths())
	require.Equal(t, []string{"guest", "sandbox", "tmpfs=/tmp", "--"}, Hardening{PrivateTmp: true}.SandboxArgs())

	for unit, wantErr := range map[string]string{
		"ProtectSystem=full\n":          "only strict",
		"ReadWritePaths=relative\n":     "not a path",
		"ReadWritePaths=+/x\n":          "prefix",
		"StateDirectory=/abs\n":         "not a path",
		"StateDirectory=-x\n":           "no \"-\" prefix",
		"ReadWritePaths=/a/../etc\n":    "not a path",
		"ProtectKernelTunables=maybe\n": "not a boolean",
	} {
		_, err := ParseHardening(strings.NewReader("[Service]\n" + unit))
		require.ErrorContains(t, err, wantErr, unit)
	}
}

func TestInitScriptExportsEnv(t *testing.T) {
	s, err := initScript(nil, []string{"HARDEN=setpriv --bounding-set -all,+bpf --"}, "")
	require.NoError(t, err)
	env := strings.Index(s, "export HARDEN='setpriv --bounding-set -all,+bpf --'\n")
	require.True(t, env > 0 && env < strings.Index(s, "sh /scenario/run.sh"), "exported before the scenario runs:\n%s", s)
	for _, bad := range []string{"HARDEN=it's", "=x", "NOEQUALS", "X=a\nb"} {
		_, err := initScript(nil, []string{bad}, "")
		require.ErrorContains(t, err, "scenario environment", bad)
	}
}

// hardenedChecks is what every daemon a guest runs must hold: exactly the
// unit's capabilities, and its file-system sandbox. The unit runs the
// daemon as root, so after exec the permitted and effective sets are the
// bounding set, and systemd raises an ambient capability in the
// inheritable set too.
func hardenedChecks(t checker, rs Results, h Hardening) {
	t.Helper()
	proc := only(t, rs, "daemon-proc")
	bnd := fmt.Sprintf("%016x", h.BoundingMask())
	amb := fmt.Sprintf("%016x", h.AmbientMask())
	require.Equal(t, bnd, proc.String("capbnd"), "CapBnd: %v", proc.Data)
	require.Equal(t, bnd, proc.String("capprm"), "CapPrm: %v", proc.Data)
	require.Equal(t, bnd, proc.String("capeff"), "CapEff: %v", proc.Data)
	require.Equal(t, amb, proc.String("capamb"), "CapAmb: %v", proc.Data)
	require.Equal(t, amb, proc.String("capinh"), "CapInh: %v", proc.Data)
	nnp, ok := proc.Number("nonewprivs")
	require.True(t, ok, "NoNewPrivs reported: %v", proc.Data)
	require.Equal(t, h.NoNewPrivileges, nnp == 1, "NoNewPrivs: %v", proc.Data)
	if len(h.SystemCallFilter) > 0 || len(h.RestrictAddressFamilies) > 0 || h.MemoryDenyWriteExecute {
		mode, _ := proc.Number("seccomp")
		require.Equal(t, 2.0, mode, "Seccomp: 2 (filter mode): %v", proc.Data)
	}

	if h.TimerSlack > 0 {
		threads := strings.Fields(proc.String("thread_timerslack_ns"))
		require.NotEmpty(t, threads, "every thread's timer slack was read: %v", proc.Data)
		for _, th := range threads {
			_, ns, _ := strings.Cut(th, ":")
			require.Equal(t, strconv.FormatInt(h.TimerSlack.Nanoseconds(), 10), ns,
				"TimerSlackNSec: thread %s's slack (every thread, sysmon among them): %v", th, proc.Data["thread_timerslack_ns"])
		}
	}

	mounts, _ := proc.Data["mounts"].(map[string]any)
	require.NotEmpty(t, mounts, "the daemon's mounts were read")
	if h.ProtectSystem == "strict" {
		require.Equal(t, "ro", mounts["/"], "ProtectSystem=strict: / read-only; mounts %v", mounts)
	}
	if h.ProtectKernelTunables {
		require.Equal(t, "ro", mounts["/sys"], "ProtectKernelTunables: /sys read-only; mounts %v", mounts)
		require.Equal(t, "ro", mounts["/proc/sys"], "ProtectKernelTunables: /proc/sys read-only; mounts %v", mounts)
	}
	for p, optional := range h.WritablePaths() {
		mode, ok := mounts[p]
		if !ok && optional {
			continue
		}
		require.Equal(t, "rw", mode, "%s writable; mounts %v", p, mounts)
	}
}

// daemonSections names the sections of a boot that ran the daemon.
func daemonSections(rs Results) []string {
	var out []string
	for _, s := range rs.Step(sectionStep) {
		name := s.String("name")
		if len(rs.Section(name).Step("daemon-exit")) > 0 {
			out = append(out, name)
		}
	}
	return out
}

// TestDaemonHardened: every daemon the cell's boots ran (through tracefs,
// through eBPF, and with CEC on 6.12) held exactly the shipped unit's
// capabilities while the scenarios' isolations succeeded (their own tests
// check those). The scenario's own shell, which holds all of root's
// capabilities, must fail the same checks: they cannot pass by reading
// nothing.
func TestDaemonHardened(t *testing.T) {
	forEachCell(t, true, func(t *testing.T, lab *Lab, cell Cell) {
		h := lab.Hardening
		scenarios := []Scenario{CellScenario(), EBPFCellScenario()}
		if cell.Series == Series612 {
			scenarios = append(scenarios, CECScenario())
		}
		checked := 0
		for _, sc := range scenarios {
			all := sharedResults(t, lab, cell, sc, RunOptions{WithDaemon: true})
			for _, name := range daemonSections(all) {
				hardenedChecks(t, all.Section(name), h)
				checked++
			}
		}
		// cell: dry-run, page, page-broken, ue, storm, cpu; cell-ebpf:
		// page, ue, storm, cpu.
		require.GreaterOrEqual(t, checked, 10, "daemon sections checked")
		proc := only(t, cellSection(t, lab, cell, "page"), "daemon-proc")
		t.Logf("%s: %d daemons hardened: CapEff %s CapBnd %s CapAmb %s NoNewPrivs %v, threads' timer slack (ns) %s (unit: %s, slack %v)",
			cell, checked, proc.String("capeff"), proc.String("capbnd"), proc.String("capamb"), proc.Data["nonewprivs"],
			proc.String("thread_timerslack_ns"), strings.Join(h.Bounding, " "), h.TimerSlack)

		// The self-test: the scenario's shell holds every capability root
		// has, as a daemon launched without $HARDEN would.
		shell := only(t, cellSection(t, lab, cell, "harness"), "shell-proc")
		require.NotEmpty(t, shell.String("capeff"), "the shell's capabilities were read")
		shell.Step = "daemon-proc"
		failures := failuresOf(func(c checker) { hardenedChecks(c, Results{shell}, h) })
		require.NotEmpty(t, failures, "the hardened checks passed an unhardened process (CapEff %s)", shell.String("capeff"))
		t.Logf("%s: checks catch an unhardened process (CapEff %s): %s", cell, shell.String("capeff"), strings.Join(strings.Fields(failures[0]), " "))

		probe := cellSection(t, lab, cell, "harness").Step("soft-offline-without-sys-admin")
		require.Len(t, probe, 1)
		require.False(t, probe[0].OK, "soft offline without CAP_SYS_ADMIN succeeded: the unit may not need it")
		require.Contains(t, probe[0].Error, "operation not permitted")

		if len(h.SystemCallFilter) > 0 {
			mount := cellSection(t, lab, cell, "harness").Step("seccomp-probe")
			require.Len(t, mount, 1)
			require.False(t, mount[0].OK, "a mount under the unit's launch succeeded: %v", mount[0].Data)
			// busybox's words for EPERM.
			require.Contains(t, mount[0].String("stderr"), "permission denied")
			only(t, cellSection(t, lab, cell, "harness"), "mount-without-filter")
		}
		if h.ProtectSystem == "strict" {
			ro := cellSection(t, lab, cell, "harness").Step("read-only-probe")
			require.Len(t, ro, 1)
			require.False(t, ro[0].OK, "wrote to / under ProtectSystem=strict: %v", ro[0].Data)
			require.Contains(t, ro[0].String("stderr"), "Read-only file system")
		}
	})
}

// TestHardenedChecksTimerSlack: a daemon whose threads do not all carry
// the unit's timer slack fails the checks, and one whose threads do passes.
func TestHardenedChecksTimerSlack(t *testing.T) {
	h := Hardening{TimerSlack: time.Millisecond}
	proc := func(slacks string) Results {
		return Results{{Step: "daemon-proc", OK: true, Data: map[string]any{
			"capbnd": "0000000000000000", "capprm": "0000000000000000", "capeff": "0000000000000000",
			"capamb": "0000000000000000", "capinh": "0000000000000000", "nonewprivs": 0.0,
			"mounts": map[string]any{"/": "rw"}, "thread_timerslack_ns": slacks}}}
	}
	require.Empty(t, failuresOf(func(c checker) { hardenedChecks(c, proc("7:1000000 9:1000000"), h) }))
	for _, bad := range []string{"7:1000000 9:50000", "7:50000", ""} {
		failures := failuresOf(func(c checker) { hardenedChecks(c, proc(bad), h) })
		require.NotEmpty(t, failures, "threads %q", bad)
		require.Contains(t, failures[0], "slack", "threads %q", bad)
	}
}
