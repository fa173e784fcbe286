package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/kpath"
)

// fakeEnv is a fixture tree laid out like the real mounts.
func fakeEnv(t *testing.T, files map[string][]byte) env {
	t.Helper()
	root := t.TempDir()
	for name, data := range files {
		p := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
	}
	return env{paths: kpath.Under(root)}
}

func TestMemRecord(t *testing.T) {
	tests := []struct {
		vendor  string
		uc      bool
		bank    int
		status  uint64
		wantErr bool
	}{
		{vendor: "AuthenticAMD", bank: 4, status: 0x9c0000000008011b},
		{vendor: "AuthenticAMD", uc: true, bank: 4, status: 0xbc0000000008011b},
		{vendor: "GenuineIntel", bank: 7, status: 0x9c00000000000090},
		{vendor: "GenuineIntel", uc: true, bank: 7, status: 0xbc00000000000090},
		{vendor: "HygonGenuine", wantErr: true},
	}
	for _, tc := range tests {
		r, err := memRecord(tc.vendor, 0x2019040, tc.uc)
		if tc.wantErr {
			require.Error(t, err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, mceRecord{bank: tc.bank, status: tc.status, addr: 0x2019040, misc: 0x8c}, r)
	}
}

func TestCPUVendor(t *testing.T) {
	e := fakeEnv(t, map[string][]byte{"proc/cpuinfo": []byte("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n")})
	v, err := e.cpuVendor()
	require.NoError(t, err)
	require.Equal(t, "GenuineIntel", v)

	_, err = fakeEnv(t, map[string][]byte{"proc/cpuinfo": []byte("processor : 0\n")}).cpuVendor()
	require.ErrorContains(t, err, "no vendor_id")
}

func TestKpf(t *testing.T) {
	flags := make([]byte, 8*4)
	binary.LittleEndian.PutUint64(flags[8*3:], 1<<19|1<<5)
	e := fakeEnv(t, map[string][]byte{"proc/kpageflags": flags})
	got, err := cmdKpf(e, []string{"3"})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"pfn": "0x3", "flags": "0x80020", "hwpoison": true}, got)

	got, err = cmdKpf(e, []string{"0x1"})
	require.NoError(t, err)
	require.Equal(t, false, got["hwpoison"])

	_, err = cmdKpf(e, []string{"99"})
	require.Error(t, err, "PFN past the end")
	_, err = cmdKpf(e, []string{"zz"})
	require.Error(t, err)
}

func TestMeminfo(t *testing.T) {
	e := fakeEnv(t, map[string][]byte{"proc/meminfo": []byte("MemTotal:        1000 kB\nHardwareCorrupted:     8 kB\n")})
	got, err := cmdMeminfo(e, nil)
	require.NoError(t, err)
	require.Equal(t, uint64(8), got["hardware_corrupted_kb"])

	_, err = cmdMeminfo(fakeEnv(t, map[string][]byte{"proc/meminfo": []byte("MemTotal: 1 kB\n")}), nil)
	require.ErrorContains(t, err, "no HardwareCorrupted")
}

func TestCPUOnlineReadsAndWrites(t *testing.T) {
	e := fakeEnv(t, map[string][]byte{"sys/devices/system/cpu/cpu2/online": []byte("1\n")})
	got, err := cmdCPUOnline(e, []string{"2"})
	require.NoError(t, err)
	require.Equal(t, true, got["online"])
	got, err = cmdCPUOnline(e, []string{"2", "0"})
	require.NoError(t, err)
	require.Equal(t, false, got["online"])
	_, err = cmdCPUOnline(e, []string{"5"})
	require.Error(t, err)
}

func TestInjectWritesInOrderWithNewlines(t *testing.T) {
	files := map[string][]byte{}
	for _, f := range []string{"cpu", "status", "addr", "misc", "synd", "flags", "bank"} {
		files["sys/kernel/debug/mce-inject/"+f] = nil
	}
	files["sys/kernel/tracing/instances/lat/trace_marker"] = nil
	e := fakeEnv(t, files)
	bankMono, err := e.inject(0, mceRecord{bank: 1, status: 0x9000000000000134}, nil)
	require.NoError(t, err)
	require.Positive(t, bankMono, "the bank write is timestamped")
	for f, want := range map[string]string{"cpu": "0\n", "status": "0x9000000000000134\n", "addr": "0x0\n", "flags": "sw\n", "bank": "1\n"} {
		got, err := os.ReadFile(e.paths.DebugPath("mce-inject", f))
		require.NoError(t, err)
		require.Equal(t, want, string(got), f)
	}

	// Marked: the trace_marker line names the address.
	require.NoError(t, os.MkdirAll(filepath.Dir(e.paths.ProcPath("cpuinfo")), 0o755))
	require.NoError(t, os.WriteFile(e.paths.ProcPath("cpuinfo"), []byte("vendor_id\t: GenuineIntel\n"), 0o644))
	_, err = cmdInjectMem(e, []string{"0", "0x551d040", "mark=lat"})
	require.NoError(t, err)
	got, err := os.ReadFile(e.paths.TracingPath("instances", "lat", "trace_marker"))
	require.NoError(t, err)
	require.Equal(t, injectMark+" addr=0x551d040\n", string(got))
	_, err = cmdInjectMem(e, []string{"0", "0x551d040", "mark=absent"})
	require.ErrorContains(t, err, "trace_marker")
	_, err = cmdInjectMem(e, []string{"0", "0x551d040", "bogus"})
	require.ErrorContains(t, err, `"bogus"`)
}

func TestPatternDistinct(t *testing.T) {
	seen := map[uint64]bool{}
	for p := 0; p < 4; p++ {
		for w := 0; w < 512; w++ {
			v := pattern(p, w)
			require.False(t, seen[v])
			seen[v] = true
		}
	}
}

func FuzzParseUint(f *testing.F) {
	f.Add("0x2019040")
	f.Add("12")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseUint("x", s)
		_, _ = parseInt("x", s)
	})
}

func TestExecCarriesJSONAndExitCode(t *testing.T) {
	data, err := cmdExec(env{}, []string{"sh", "-c", `echo '{"armed":true}'`})
	require.NoError(t, err)
	require.JSONEq(t, `{"armed":true}`, string(data["json"].(json.RawMessage)))

	data, err = cmdExec(env{}, []string{"sh", "-c", "echo nope; exit 3"})
	require.Error(t, err)
	require.Equal(t, 3, data["exit"])
	require.Equal(t, "nope\n", data["stdout"])
}

func TestWaitExecGivesUp(t *testing.T) {
	data, err := cmdWaitExec(env{}, []string{"1ms", "false"})
	require.ErrorContains(t, err, "still failing")
	require.GreaterOrEqual(t, data["tries"], 1)

	_, err = cmdWaitExec(env{}, []string{"soon", "true"})
	require.ErrorContains(t, err, "timeout")
}

func TestInjectorKeepsFilesOpen(t *testing.T) {
	files := map[string][]byte{}
	for _, f := range injectFields {
		files["sys/kernel/debug/mce-inject/"+f] = nil
	}
	e := fakeEnv(t, files)
	in, err := e.openInjector()
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		require.NoError(t, in.inject(1, mceRecord{bank: 7, status: 0x9c00000000000090, addr: 0x1040, misc: 0x8c}))
	}
	in.close()
	got, err := os.ReadFile(e.paths.DebugPath("mce-inject", "bank"))
	require.NoError(t, err)
	require.Equal(t, "7\n7\n7\n", string(got), "one write per injection on the kept descriptor")
}

func TestProcStatus(t *testing.T) {
	e := fakeEnv(t, map[string][]byte{
		"proc/42/status": []byte("Name:\tselfprotect\nVmPeak:\t  900 kB\nVmHWM:\t   24540 kB\nVmRSS:\t 20000 kB\nThreads:\t7\n" +
			"CapInh:\t0000000000000000\nCapPrm:\t000000c000200000\nCapEff:\t000000c000200000\nCapBnd:\t000000c000200000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t0\n"),
		// A command name with spaces and a parenthesis: fields count from its end.
		"proc/42/stat": []byte("42 (self prot)ect) S 1 42 42 0 -1 4194560 1800 0 0 0 37 12 0 0 20 0 7 0 512 1000 200\n"),
		// A read-only root, a file bind-mounted writable over it, a space
		// in a mount point, and /tmp mounted twice (the later one is seen).
		"proc/42/mountinfo": []byte("1 1 0:2 / / ro,relatime - rootfs rootfs rw\n" +
			"30 1 0:20 /devices/system/memory/soft_offline_page /sys/devices/system/memory/soft_offline_page rw,nosuid shared:1 - sysfs sysfs rw\n" +
			"31 1 0:21 / /tmp rw - tmpfs tmpfs rw\n" +
			"32 31 0:22 / /tmp ro,nodev - tmpfs tmpfs rw\n" +
			"33 1 0:23 / /a\\040b rw - tmpfs tmpfs rw\n"),
		// Two threads: each one's timer slack is in /proc/TID.
		"proc/42/task/42/status":    []byte("voluntary_ctxt_switches:\t3\nnonvoluntary_ctxt_switches:\t1\n"),
		"proc/42/task/43/status":    []byte("voluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t0\n"),
		"proc/42/task/42/schedstat": []byte("100 5 7\n"),
		"proc/42/task/43/schedstat": []byte("50 1 2\n"),
		"proc/42/timerslack_ns":     []byte("1000000\n"),
		"proc/43/timerslack_ns":     []byte("50000\n"),
	})
	data, err := cmdProcStatus(e, []string{"42"})
	require.NoError(t, err)
	require.Equal(t, uint64(24540), data["vmhwm"])
	require.Equal(t, uint64(7), data["threads"])
	require.Equal(t, uint64(37+12), data["cpu_ticks"], "utime + stime")
	require.Equal(t, "000000c000200000", data["capeff"])
	require.Equal(t, "000000c000200000", data["capbnd"])
	require.Equal(t, "0000000000000000", data["capamb"])
	require.Equal(t, uint64(1), data["nonewprivs"])
	require.Equal(t, uint64(0), data["seccomp"])
	require.Equal(t, map[string]string{"/": "ro", "/sys/devices/system/memory/soft_offline_page": "rw", "/tmp": "ro", "/a b": "rw"}, data["mounts"])
	require.Equal(t, "42:1000000 43:50000", data["thread_timerslack_ns"])
	require.Equal(t, "42:3/1 43:5/0", data["thread_ctxt"])
	require.Equal(t, "42:7 43:2", data["thread_slices"])
	_, err = cmdProcStatus(fakeEnv(t, map[string][]byte{"proc/1/status": []byte("Name: x\n")}), []string{"1"})
	require.ErrorContains(t, err, "no VmHWM")
}

func TestParseSandbox(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		ops     []sandboxOp
		argv    []string
		wantErr string
	}{
		{
			name: "operations in order, optional paths",
			args: []string{"mkdir=/run/x", "ro=/", "rw=-/sys/devices/system/memory/soft_offline_page", "tmpfs=/tmp", "--", "setpriv", "--", "selfprotect"},
			ops: []sandboxOp{{kind: "mkdir", path: "/run/x"}, {kind: "ro", path: "/"},
				{kind: "rw", path: "/sys/devices/system/memory/soft_offline_page", optional: true}, {kind: "tmpfs", path: "/tmp"}},
			argv: []string{"setpriv", "--", "selfprotect"},
		},
		{name: "no command", args: []string{"ro=/", "--"}, wantErr: "no command"},
		{name: "no separator", args: []string{"ro=/"}, wantErr: "no -- before"},
		{name: "relative path", args: []string{"ro=tmp", "--", "x"}, wantErr: "want OP=/PATH"},
		{name: "unknown operation", args: []string{"hide=/tmp", "--", "x"}, wantErr: `unknown operation "hide"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, argv, err := parseSandbox(tc.args)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.ops, ops)
			require.Equal(t, tc.argv, argv)
		})
	}
}

// TestTimerSlackExecs runs the helper below in a child: timerslack must
// set the slack on the thread that execs, so the command reads it back.
func TestTimerSlackExecs(t *testing.T) {
	if os.Getenv("GUEST_TIMERSLACK_HELPER") == "1" {
		_, err := cmdTimerSlack(env{}, []string{"1234567", "--", "cat", "/proc/self/timerslack_ns"})
		t.Fatalf("timerslack returned instead of exec: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTimerSlackExecs$")
	cmd.Env = append(os.Environ(), "GUEST_TIMERSLACK_HELPER=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "1234567", strings.TrimSpace(string(out)))

	for _, args := range [][]string{{"0", "--", "cat"}, {"x", "--", "cat"}, {"1000", "cat"}, {"1000", "--"}} {
		_, err := cmdTimerSlack(env{}, args)
		require.Error(t, err, "%q", args)
	}
}

// TestTraceCountCarriesLines: a few records come with their lines, a
// storm's count alone, and a caller that asks to carry more gets them
// (the latency bench dates 120 records from them).
func TestTraceCountCarriesLines(t *testing.T) {
	tests := []struct {
		name      string
		records   int
		args      []string
		wantLines bool
	}{
		{name: "few, no count asked", records: 3, args: nil, wantLines: true},
		{name: "more than carried unasked", records: maxCarriedLines + 1, args: nil, wantLines: false},
		{name: "waiting does not carry more", records: 120, args: []string{"120", "1s"}, wantLines: false},
		{name: "as many as asked to carry", records: 120, args: []string{"120", "1s", "carry=400"}, wantLines: true},
		{name: "carry before the count", records: 120, args: []string{"carry=120", "120"}, wantLines: true},
		{name: "more than asked to carry", records: 130, args: []string{"120", "1s", "carry=120"}, wantLines: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString("# tracer: nop\n")
			for i := 0; i < tc.records; i++ {
				fmt.Fprintf(&b, "  guest-1 [001] .....  9.%06d: mce_record: CPU: 1, MCGc/s: 0/0, MC7: 9c00000000000090, ADDR: %x\n", i, 0x551d040+i<<12)
			}
			e := fakeEnv(t, map[string][]byte{"sys/kernel/tracing/instances/x/trace": []byte(b.String())})
			got, err := cmdTraceCount(e, append([]string{"x"}, tc.args...))
			require.NoError(t, err)
			require.Equal(t, tc.records, got["mce_record"])
			lines, ok := got["lines"].([]string)
			require.Equal(t, tc.wantLines, ok, "lines carried")
			if ok {
				require.Len(t, lines, tc.records)
			}
		})
	}
}

// TestTraceStartKprobe: the probes are defined once a boot (appended,
// never truncating the definitions) and enabled in each instance.
func TestTraceStartKprobe(t *testing.T) {
	files := map[string][]byte{"sys/kernel/tracing/kprobe_events": []byte("p:other/x x\n")}
	for _, inst := range []string{"a", "b"} {
		for _, f := range []string{"buffer_percent", "trace_clock", "tracing_on", "events/mce/mce_record/enable",
			"events/bench/soft_offline_page/enable", "events/bench/soft_offline_page_ret/enable"} {
			files["sys/kernel/tracing/instances/"+inst+"/"+f] = nil
		}
	}
	e := fakeEnv(t, files)
	_, err := cmdTraceStart(e, []string{"a", "clock=mono", "kprobe=soft_offline_page"})
	require.NoError(t, err)
	defs, err := os.ReadFile(e.paths.TracingPath("kprobe_events"))
	require.NoError(t, err)
	require.Equal(t, "p:other/x x\np:bench/soft_offline_page soft_offline_page arg1=$arg1:x64\nr:bench/soft_offline_page_ret soft_offline_page ret=$retval:s64\n", string(defs))
	for _, f := range []string{"soft_offline_page", "soft_offline_page_ret"} {
		got, err := os.ReadFile(e.paths.TracingPath("instances", "a", "events", "bench", f, "enable"))
		require.NoError(t, err)
		require.Equal(t, "1\n", string(got), f)
	}

	// The kernel made the event directory: a second instance only enables.
	require.NoError(t, os.MkdirAll(e.paths.TracingPath("events", "bench", "soft_offline_page"), 0o755))
	_, err = cmdTraceStart(e, []string{"b", "kprobe=soft_offline_page"})
	require.NoError(t, err)
	again, err := os.ReadFile(e.paths.TracingPath("kprobe_events"))
	require.NoError(t, err)
	require.Equal(t, string(defs), string(again), "defined once")

	_, err = cmdTraceStart(e, []string{"a", "probe=x"})
	require.ErrorContains(t, err, "kprobe=")
}
