package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// steadyPlan is where the k-th error of a steady injection goes: CPUs in
// turn, each error on a page of its own (ADDR + k pages), so no page rule
// trips and no eBPF per-page limit aggregates them: every record the
// tracepoint delivers is sent on its own by either source. With
// stormEvery > 0, every stormEvery-th error (the first included) goes to
// stormAddr instead: one page far above the eBPF per-page limit, whose
// records the probes aggregate.
type steadyPlan struct {
	cpus       []int
	base       uint64
	stormEvery int
	stormAddr  uint64
}

func (p steadyPlan) at(k int) (cpu int, addr uint64) {
	cpu = p.cpus[k%len(p.cpus)]
	if p.stormEvery > 0 && k%p.stormEvery == 0 {
		return cpu, p.stormAddr
	}
	return cpu, p.base + uint64(k)*0x1000
}

// parseCPUs reads "0,1,2,3".
func parseCPUs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("parsing CPU list %q: want numbers like 0,1,2", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// cmdInjectSteady injects corrected memory errors at a steady pace, from
// CPUS in turn, the k-th at ADDR + k pages, one every PERIOD, until
// STOPFILE exists or MAX were injected; with EVERY and STORMADDR, every
// EVERY-th error goes to STORMADDR (a storm on one page among them). It runs in the background across
// an event the scenario waits for (the daemon's source hand-over), so its
// records land before, during and after it. One process and kept
// descriptors: a process start per error would set the pace, not PERIOD.
func cmdInjectSteady(e env, args []string) (map[string]any, error) {
	cpus, err := parseCPUs(args[0])
	if err != nil {
		return nil, err
	}
	base, err := parseUint("address", args[1])
	if err != nil {
		return nil, err
	}
	period, err := time.ParseDuration(args[2])
	if err != nil {
		return nil, fmt.Errorf("parsing period %q: %w", args[2], err)
	}
	stop := args[3]
	limit, err := parseInt("max", args[4])
	if err != nil {
		return nil, err
	}
	plan := steadyPlan{cpus: cpus, base: base}
	if len(args) >= 7 {
		if plan.stormEvery, err = parseInt("storm every", args[5]); err != nil {
			return nil, err
		}
		if plan.stormAddr, err = parseUint("storm address", args[6]); err != nil {
			return nil, err
		}
	}
	vendor, err := e.cpuVendor()
	if err != nil {
		return nil, err
	}
	in, err := e.openInjector()
	if err != nil {
		return nil, err
	}
	defer in.close()
	// One OS thread, re-pinned per error: a record is logged by a kworker
	// on the CPU that wrote bank, so the records spread over every CPU's
	// ring buffer, as real errors do.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	perCPU := map[string]int{}
	storm := 0
	startMono := monoMicros()
	injected := 0
	for ; injected < limit; injected++ {
		if _, err = os.Stat(stop); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("checking stop file %s: %w", stop, err)
			break
		}
		err = nil
		cpu, addr := plan.at(injected)
		var set unix.CPUSet
		set.Set(cpu)
		if err = unix.SchedSetaffinity(0, &set); err != nil {
			err = fmt.Errorf("pinning to CPU %d: %w", cpu, err)
			break
		}
		var r mceRecord
		if r, err = memRecord(vendor, addr, false); err != nil {
			break
		}
		if err = in.inject(cpu, r); err != nil {
			break
		}
		perCPU[strconv.Itoa(cpu)]++
		if addr == plan.stormAddr && plan.stormEvery > 0 {
			storm++
		}
		time.Sleep(period)
	}
	data := map[string]any{
		"injected": injected, "per_cpu": perCPU, "start_mono_us": startMono, "mono_us": monoMicros(),
		"first_addr": hex(base), "vendor": vendor, "storm": storm,
	}
	if injected > 0 {
		_, last := plan.at(injected - 1)
		data["last_addr"] = hex(last)
	}
	if err != nil {
		return data, fmt.Errorf("after %d injections: %w", injected, err)
	}
	return data, nil
}
