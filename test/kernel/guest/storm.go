package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/test/procmem"
)

// injector keeps mce-inject's files open so a storm costs one write(2) per
// field and no process start per error: re-exec'ing the helper for each of
// 10 000 errors would measure fork/exec under emulation, not the daemon.
type injector struct {
	files map[string]*os.File
}

// injectFields is the write order mce-inject needs: bank last, because
// writing bank injects (and resets the other fields).
var injectFields = []string{"cpu", "status", "addr", "misc", "synd", "flags", "bank"}

func (e env) openInjector() (*injector, error) {
	dir := e.paths.DebugPath("mce-inject")
	in := &injector{files: map[string]*os.File{}}
	for _, name := range injectFields {
		p := filepath.Join(dir, name)
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			in.close()
			return nil, fmt.Errorf("opening %s: %w", p, err)
		}
		in.files[name] = f
	}
	return in, nil
}

func (in *injector) close() {
	for _, f := range in.files {
		f.Close()
	}
}

// inject writes one record; values end in a newline since the flags file
// drops the last byte written. Plain writes on the kept descriptors: the
// debugfs files cannot seek (pwrite fails with ESPIPE) and ignore the offset.
func (in *injector) inject(cpu int, r mceRecord) error {
	values := map[string]string{
		"cpu": fmt.Sprint(cpu), "status": hex(r.status), "addr": hex(r.addr), "misc": hex(r.misc),
		"synd": "0", "flags": "sw", "bank": fmt.Sprint(r.bank),
	}
	for _, name := range injectFields {
		if _, err := in.files[name].Write([]byte(values[name] + "\n")); err != nil {
			return fmt.Errorf("writing %q to mce-inject/%s: %w", values[name], name, err)
		}
	}
	return nil
}

// injectN writes r n times from cpu; the first failed write ends it.
func (in *injector) injectN(cpu, n int, r mceRecord) error {
	for range n {
		if err := in.inject(cpu, r); err != nil {
			return err
		}
	}
	return nil
}

// cmdInjectStorm injects N corrected memory errors at ADDR from CPU as
// fast as mce-inject takes them and reports how long that took. It stops
// at the first failed write: a storm that silently injected less would
// make the delivered/injected comparison meaningless.
func cmdInjectStorm(e env, args []string) (map[string]any, error) {
	cpu, err := parseInt("CPU", args[0])
	if err != nil {
		return nil, err
	}
	addr, err := parseUint("address", args[1])
	if err != nil {
		return nil, err
	}
	n, err := parseInt("count", args[2])
	if err != nil {
		return nil, err
	}
	vendor, err := e.cpuVendor()
	if err != nil {
		return nil, err
	}
	r, err := memRecord(vendor, addr, false)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("pinning to CPU %d: %w", cpu, err)
	}
	in, err := e.openInjector()
	if err != nil {
		return nil, err
	}
	defer in.close()
	start, startMono := time.Now(), monoMicros()
	injected := 0
	for ; injected < n; injected++ {
		if err = in.inject(cpu, r); err != nil {
			break
		}
	}
	elapsed := time.Since(start)
	data := map[string]any{
		"injected": injected, "elapsed_ms": elapsed.Milliseconds(), "start_mono_us": startMono, "mono_us": monoMicros(),
		"per_second": float64(injected) / elapsed.Seconds(), "addr": hex(addr), "vendor": vendor,
	}
	if err != nil {
		return data, fmt.Errorf("after %d injections: %w", injected, err)
	}
	return data, nil
}

// cmdProcStatus reports the memory lines of /proc/PID/status in kB
// (VmHWM is the daemon's peak RSS), and the privileges the process runs
// with (Cap*, NoNewPrivs, Seccomp).
func cmdProcStatus(e env, args []string) (map[string]any, error) {
	pid, p, raw, err := readProcOf(e, args[0], "status")
	if err != nil {
		return nil, err
	}
	data := map[string]any{"pid": pid, "mono_us": monoMicros()}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.HasPrefix(k, "Cap") {
			// Capability sets stay the kernel's hex words: as JSON
			// numbers, 64-bit masks could lose bits.
			data[strings.ToLower(k)] = strings.TrimSpace(v)
			continue
		}
		if !ok || !strings.HasPrefix(k, "Vm") && !strings.HasPrefix(k, "Rss") && k != "Threads" && k != "NoNewPrivs" && k != "Seccomp" {
			continue
		}
		var n uint64
		if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &n); err == nil {
			data[strings.ToLower(k)] = n
		}
	}
	if _, ok := data["vmhwm"]; !ok {
		return data, fmt.Errorf("no VmHWM in %s", p)
	}
	// utime and stime (fields 14 and 15 of /proc/PID/stat, after the
	// parenthesised command name), in clock ticks.
	sp := e.paths.ProcPath(fmt.Sprint(pid), "stat")
	stat, err := os.ReadFile(sp)
	if err != nil {
		return data, fmt.Errorf("reading %s: %w", sp, err)
	}
	i := strings.LastIndex(string(stat), ") ")
	ok := i >= 0
	after := string(stat)[i+2:]
	f := strings.Fields(after)
	if !ok || len(f) < 13 {
		return data, fmt.Errorf("%s: no utime/stime in %q", sp, stat)
	}
	var ut, st uint64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return data, fmt.Errorf("%s utime %q: %w", sp, f[11], err)
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return data, fmt.Errorf("%s stime %q: %w", sp, f[12], err)
	}
	data["cpu_ticks"] = ut + st
	// The idle figure is "RSS 60 s after start": the process's own start
	// time (field 22, clock ticks since boot; USER_HZ 100 on Debian)
	// against the boot clock says how long after it this sample is.
	if len(f) > 19 {
		var start uint64
		var ts unix.Timespec
		if _, err := fmt.Sscan(f[19], &start); err == nil && unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
			data["age_ms"] = ts.Nano()/1e6 - int64(start)*10
		}
	}
	// schedstat's first field is a thread's time on CPU in ns, added up at
	// each switch rather than sampled at ticks: under a loaded emulator a
	// 10 ms tick lands on whoever runs. Summed over the live threads (the
	// process's own file covers its main thread only).
	if ns, slices, err := taskRuntime(e, pid); err == nil {
		data["cpu_ns"] = ns
		data["cpu_slices"] = slices
	}
	if per, err := threadSlices(e, pid); err == nil {
		data["thread_slices"] = per
	}
	if per, err := threadSwitches(e, pid); err == nil {
		data["thread_ctxt"] = per
	}
	if per, err := threadTimerSlacks(e, pid); err == nil {
		data["thread_timerslack_ns"] = per
	} else {
		data["thread_timerslack_error"] = err.Error()
	}
	mp := e.paths.ProcPath(fmt.Sprint(pid), "mountinfo")
	mi, err := os.ReadFile(mp)
	if err != nil {
		return data, fmt.Errorf("reading %s: %w", mp, err)
	}
	data["mounts"] = mountModes(string(mi))
	return data, nil
}

// cmdProcSmaps sorts a process's resident set by what holds it (the
// binary's code, read-only data, the heap, BPF maps; see test/procmem):
// kB figures, and the one-line summary as "summary".
func cmdProcSmaps(e env, args []string) (map[string]any, error) {
	pid, p, raw, err := readProcOf(e, args[0], "smaps")
	if err != nil {
		return nil, err
	}
	b, err := procmem.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	data := b.KB()
	data["pid"] = pid
	data["summary"] = b.String()
	if secs, err := exeResidency(e, pid); err == nil {
		data["sections"] = secs
	} else {
		data["sections_error"] = err.Error()
	}
	// Whether the kernel backs anonymous memory with huge pages on its
	// own ("always") changes what a Go heap costs in RSS.
	if thp, err := os.ReadFile(e.paths.SysPath("kernel", "mm", "transparent_hugepage", "enabled")); err == nil {
		data["thp"] = strings.TrimSpace(string(thp))
	}
	return data, nil
}

// exeResidency says which sections of the process's executable are
// mapped in (code, read-only data, the function table), from its maps,
// its pagemap and the file itself.
func exeResidency(e env, pid int) (string, error) {
	dir := e.paths.ProcPath(fmt.Sprint(pid))
	maps, err := os.ReadFile(filepath.Join(dir, "maps"))
	if err != nil {
		return "", fmt.Errorf("reading maps: %w", err)
	}
	ms, err := procmem.ExeMappings(maps)
	if err != nil {
		return "", err
	}
	exe, err := os.Open(filepath.Join(dir, "exe"))
	if err != nil {
		return "", fmt.Errorf("opening exe: %w", err)
	}
	defer exe.Close()
	secs, err := procmem.ELFSections(exe)
	if err != nil {
		return "", err
	}
	pm, err := os.Open(filepath.Join(dir, "pagemap"))
	if err != nil {
		return "", fmt.Errorf("opening pagemap: %w", err)
	}
	defer pm.Close()
	kb, err := procmem.ResidentBySection(ms, secs, pm, uint64(os.Getpagesize()))
	if err != nil {
		return "", err
	}
	return procmem.FormatSections(kb), nil
}

// mountModes maps each mount point in a mountinfo to "ro" or "rw", as the
// process sees it: of mounts stacked on one point, the last (topmost).
func mountModes(mountinfo string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		mode := "rw"
		for _, o := range strings.Split(f[5], ",") {
			if o == "ro" {
				mode = "ro"
			}
		}
		out[unescapeMountinfo(f[4])] = mode
	}
	return out
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// taskRuntime sums schedstat over pid's live threads.
func taskRuntime(e env, pid int) (ns, slices uint64, err error) {
	dir := e.paths.ProcPath(fmt.Sprint(pid), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, t := range tasks {
		raw, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			return 0, 0, fmt.Errorf("reading a thread's schedstat: %w", err)
		}
		// Time on CPU, time waiting to run, and how many times the thread
		// was switched in: its wake-ups, give or take preemptions.
		var run, wait, n uint64
		if _, err := fmt.Sscan(string(raw), &run, &wait, &n); err != nil {
			return 0, 0, fmt.Errorf("parsing %q: %w", raw, err)
		}
		ns += run
		slices += n
	}
	return ns, slices, nil
}

// threadSlices lists each live thread's switch-ins as "tid:n ...", in
// thread id order: a Go process's first threads are the main one and
// sysmon, so this tells the runtime's wake-ups from the work's.
func threadSlices(e env, pid int) (string, error) {
	return perThread(e, pid, func(tid string) (string, error) {
		raw, err := os.ReadFile(e.paths.ProcPath(fmt.Sprint(pid), "task", tid, "schedstat"))
		if err != nil {
			return "", fmt.Errorf("reading a thread's schedstat: %w", err)
		}
		var run, wait, n uint64
		if _, err := fmt.Sscan(string(raw), &run, &wait, &n); err != nil {
			return "", fmt.Errorf("parsing %q: %w", raw, err)
		}
		return fmt.Sprint(n), nil
	})
}

// perThread lists "tid:value ..." over a process's live threads, in
// thread id order, value being what read says of each.
func perThread(e env, pid int, read func(tid string) (string, error)) (string, error) {
	dir := e.paths.ProcPath(fmt.Sprint(pid), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("listing %s: %w", dir, err)
	}
	out := make([]string, 0, len(tasks))
	for _, t := range tasks {
		v, err := read(t.Name())
		if err != nil {
			return "", err
		}
		out = append(out, t.Name()+":"+v)
	}
	return strings.Join(out, " "), nil
}

// threadSwitches lists each live thread's context switches from its
// status file as "tid:voluntary/nonvoluntary ...": a voluntary switch is a
// wake-up after the thread slept (a timer, a futex, epoll), a
// nonvoluntary one a preemption, which under emulation follows load.
func threadSwitches(e env, pid int) (string, error) {
	return perThread(e, pid, func(tid string) (string, error) {
		p := e.paths.ProcPath(fmt.Sprint(pid), "task", tid, "status")
		raw, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", p, err)
		}
		var vol, nonvol uint64
		for _, line := range strings.Split(string(raw), "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "voluntary_ctxt_switches":
				_, err = fmt.Sscan(v, &vol)
			case "nonvoluntary_ctxt_switches":
				_, err = fmt.Sscan(v, &nonvol)
			}
			if err != nil {
				return "", fmt.Errorf("%s: %q: %w", p, line, err)
			}
		}
		return fmt.Sprintf("%d/%d", vol, nonvol), nil
	})
}

// cmdFileBase64 carries a file the guest wrote (a daemon's CPU profile)
// out through the console.
func cmdFileBase64(e env, args []string) (map[string]any, error) {
	raw, err := os.ReadFile(args[0])
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", args[0], err)
	}
	return map[string]any{"path": args[0], "bytes": len(raw), "base64": base64.StdEncoding.EncodeToString(raw)}, nil
}

// readProcOf reads /proc/PID/name for the PID argument pidArg, and says
// which PID and path it read.
func readProcOf(e env, pidArg, name string) (int, string, []byte, error) {
	pid, err := parseInt("PID", pidArg)
	if err != nil {
		return 0, "", nil, err
	}
	p := e.paths.ProcPath(fmt.Sprint(pid), name)
	raw, err := os.ReadFile(p)
	if err != nil {
		return 0, "", nil, fmt.Errorf("reading %s: %w", p, err)
	}
	return pid, p, raw, nil
}
