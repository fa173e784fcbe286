// Command guest is the helper the real-kernel suite runs inside its QEMU
// guests. Each subcommand does one kernel-facing step and prints one
// machine-readable line, "@@RESULT {json}", on stdout (the serial console),
// which the host harness parses.
//
// Usage: guest [-tag LABEL] SUBCOMMAND ARGS...
//
//	hold N DIR               map N pages, write a pattern, publish their physical
//	                         addresses in DIR, wait for DIR/release, verify the pattern
//	kpf PFN                  /proc/kpageflags word of PFN and its HWPOISON bit
//	free-page FROM DIR       first free page at or after PFN FROM: its PFN and address into DIR
//	meminfo                  HardwareCorrupted from /proc/meminfo, in kB
//	inject-mem CPU ADDR [UC] [mark=INSTANCE]  corrected (or uncorrected) memory error
//	                         through mce-inject, marked in a trace instance just before
//	inject-cache CPU         corrected cache-hierarchy error through mce-inject
//	soft-offline ADDR        write ADDR to soft_offline_page
//	wait-poisoned PFN TIMEOUT [INTERVAL [READY]]  poll kpageflags until HWPOISON; report
//	                         elapsed µs and CLOCK_MONOTONIC µs
//	cpu-online N [0|1]       read (or set) cpuN/online
//	inject-storm CPU ADDR N  N corrected memory errors as fast as mce-inject takes them
//	inject-steady CPUS ADDR PERIOD STOPFILE MAX [EVERY STORMADDR]  corrected memory errors
//	                         from CPUS in turn, one page each (ADDR + k pages), every PERIOD
//	                         until STOPFILE exists; every EVERY-th at STORMADDR
//	trace-start NAME [clock=C] [kb=N] [event=SYS/EV] [kprobe=FUNC]  tracefs instance
//	                         NAME recording mce:mce_record (and more)
//	trace-count NAME [WANT|stable [TIMEOUT]] [carry=N]  count mce_record lines in
//	                         instance NAME, waiting for at least WANT (or a stable count)
//	proc-status PID          VmHWM, VmRSS... of PID in kB, its capabilities and mounts
//	stamp-run LOG CMD...     run CMD, its output lines prefixed by CLOCK_MONOTONIC µs into LOG
//	exec CMD ARGS...         run CMD, carry its exit code and output (JSON when it is)
//	wait-exec TIMEOUT CMD... re-run CMD until it exits 0
//	ebpf-check [N [UE_ADDR]] eBPF source beside tracefs: identical events, an N-error storm counted
//	sandbox OP=PATH... -- CMD  exec CMD in a mount namespace with a unit's file-system
//	                         sandbox (ro=, rw=, tmpfs=, mkdir=)
//	seccomp [--allow N,..] [--errno N] [--families N,..] [--mdwe] -- CMD
//	                         exec CMD under a unit's system-call filter
//	file-base64 PATH         a file's bytes, base64 (a daemon's CPU profile)
//	sandbox-probe            try what a hardened unit forbids (load a module, set the
//	                         clock, a new namespace...): "ok" or the errno, per probe
//
// It is built with CGO_ENABLED=0 so it runs in an initramfs with no libc.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/selfprotect/selfprotect/kpath"
)

// result is one @@RESULT line. Step names the subcommand (or -tag); Error
// holds why OK is false; Data carries the step's measurements.
type result struct {
	Step  string         `json:"step"`
	OK    bool           `json:"ok"`
	Error string         `json:"error,omitempty"`
	Data  map[string]any `json:"data,omitempty"`
}

func emit(r result) {
	line, err := json.Marshal(r)
	if err != nil {
		line = []byte(fmt.Sprintf(`{"step":%q,"ok":false,"error":"encoding result: %v"}`, r.Step, err))
	}
	// One write per line keeps the line whole on the console.
	os.Stdout.Write(append(append([]byte("@@RESULT "), line...), '\n'))
}

type command struct {
	args int // minimum number of arguments
	run  func(env, []string) (map[string]any, error)
}

// env is what every subcommand needs: the kernel's mounts.
type env struct {
	paths kpath.Paths
}

func commands() map[string]command {
	return map[string]command{
		"hold":          {2, cmdHold},
		"kpf":           {1, cmdKpf},
		"free-page":     {2, cmdFreePage},
		"meminfo":       {0, cmdMeminfo},
		"inject-mem":    {2, cmdInjectMem},
		"inject-cache":  {1, cmdInjectCache},
		"soft-offline":  {1, cmdSoftOffline},
		"wait-poisoned": {2, cmdWaitPoisoned},
		"cpu-online":    {1, cmdCPUOnline},
		"trace-start":   {1, cmdTraceStart},
		"trace-count":   {1, cmdTraceCount},
		"inject-storm":  {3, cmdInjectStorm},
		"inject-steady": {5, cmdInjectSteady},
		"proc-status":   {1, cmdProcStatus},
		"proc-smaps":    {1, cmdProcSmaps},
		"stamp-run":     {2, cmdStampRun},
		"exec":          {1, cmdExec},
		"wait-exec":     {2, cmdWaitExec},
		"ebpf-check":    {0, cmdEBPFCheck},
		"sandbox":       {2, cmdSandbox},
		"seccomp":       {1, cmdSeccomp},
		"timerslack":    {2, cmdTimerSlack},
		"sandbox-probe": {0, cmdSandboxProbe},
		"file-base64":   {1, cmdFileBase64},
		"min-isolator":  {2, cmdMinIsolator},
	}
}

func main() {
	tag := flag.String("tag", "", "step name in the result line (default: the subcommand)")
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: guest [-tag LABEL] SUBCOMMAND ARGS...")
		os.Exit(2)
	}
	step := *tag
	if step == "" {
		step = args[0]
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		emit(result{Step: step, Error: fmt.Sprintf("unknown subcommand %q", args[0])})
		os.Exit(2)
	}
	if len(args)-1 < cmd.args {
		emit(result{Step: step, Error: fmt.Sprintf("%s needs %d arguments, got %d", args[0], cmd.args, len(args)-1)})
		os.Exit(2)
	}
	data, err := cmd.run(env{paths: kpath.Default().Resolve()}, args[1:])
	r := result{Step: step, OK: err == nil, Data: data}
	if err != nil {
		r.Error = err.Error()
	}
	emit(r)
	if err != nil {
		os.Exit(1)
	}
}
