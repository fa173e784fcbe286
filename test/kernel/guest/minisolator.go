package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// cmdMinIsolator is the floor any userspace isolator stands on, measured
// beside the daemon in the latency bench: it reads mce_record through the
// text trace_pipe of a trace instance of its own (args[0]), counts records
// per page and writes a page's address to soft_offline_page at its second
// record. No policy, no store, no budget, no verify: what it spends is the
// kernel waking a reader and one sysfs write, which no design that
// isolates from userspace can avoid. It creates args[1] once it reads, and
// reports when SIGTERM ends it.
func cmdMinIsolator(e env, args []string) (map[string]any, error) {
	// An instance as the bench's own: mce_record on, every record wakes
	// the reader (buffer_percent 0).
	if _, err := cmdTraceStart(e, args[:1]); err != nil {
		return nil, err
	}
	inst := e.paths.TracingPath("instances", args[0])
	pipe, err := os.Open(inst + "/trace_pipe")
	if err != nil {
		return nil, fmt.Errorf("opening %s/trace_pipe: %w", inst, err)
	}
	softPath := e.paths.SysPath("devices/system/memory/soft_offline_page")
	soft, err := unix.Open(softPath, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", softPath, err)
	}
	var mu sync.Mutex
	counts := map[uint64]int{}
	var offlined, failed, records int
	// read is, per deciding record's page ("0x2d94"), when its line was
	// read (CLOCK_MONOTONIC µs, the bench's trace clock): the host splits
	// the wake-up from the rest as it does the daemon's.
	read := map[string]any{}
	report := func() map[string]any {
		mu.Lock()
		defer mu.Unlock()
		return map[string]any{"records": records, "offlined": offlined, "failed": failed, "read_mono_us": read}
	}
	// The read below cannot be interrupted (trace_pipe is read blocking):
	// SIGTERM reports and exits from here.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		emit(result{Step: "min-isolator", OK: true, Data: report()})
		os.Exit(0)
	}()
	if err := os.WriteFile(args[1], nil, 0o644); err != nil {
		return nil, fmt.Errorf("creating %s: %w", args[1], err)
	}
	r := bufio.NewReader(pipe)
	for {
		line, err := r.ReadString('\n')
		at := monoMicros()
		if err != nil {
			return report(), fmt.Errorf("reading %s/trace_pipe: %w", inst, err)
		}
		addr, ok := mceAddr(line)
		if !ok {
			continue
		}
		page := addr &^ 0xfff
		mu.Lock()
		records++
		counts[page]++
		decide := counts[page] == 2
		if decide {
			read[fmt.Sprintf("%#x", page>>12)] = at
		}
		mu.Unlock()
		if !decide {
			continue
		}
		_, werr := unix.Write(soft, []byte(fmt.Sprintf("%#x\n", page)))
		mu.Lock()
		if werr != nil {
			failed++
		} else {
			offlined++
		}
		mu.Unlock()
	}
}

// mceAddr is the ADDR field of an mce_record line of trace_pipe
// ("..., ADDR: 0000000002d94040, MISC: ..."); false without one or at 0.
func mceAddr(line string) (uint64, bool) {
	_, rest, ok := strings.Cut(line, "ADDR: ")
	if !ok {
		return 0, false
	}
	hex, _, _ := strings.Cut(rest, ",")
	addr, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
	return addr, err == nil && addr != 0
}
