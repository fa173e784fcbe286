package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cmdMeminfo reports HardwareCorrupted, which grows by 4 kB per poisoned page.
func cmdMeminfo(e env, _ []string) (map[string]any, error) {
	p := e.paths.ProcPath("meminfo")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "HardwareCorrupted:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing HardwareCorrupted %q: %w", rest, err)
		}
		return map[string]any{"hardware_corrupted_kb": kb}, nil
	}
	return nil, fmt.Errorf("no HardwareCorrupted line in %s", p)
}

func cmdSoftOffline(e env, args []string) (map[string]any, error) {
	addr, err := parseUint("address", args[0])
	if err != nil {
		return nil, err
	}
	p := e.paths.SysPath("devices/system/memory/soft_offline_page")
	start := time.Now()
	err = writeOnce(p, hex(addr)+"\n")
	return map[string]any{"addr": hex(addr), "elapsed_us": time.Since(start).Microseconds()}, err
}

// cmdCPUOnline reads cpuN/online, or writes it when a value is given.
func cmdCPUOnline(e env, args []string) (map[string]any, error) {
	cpu, err := parseInt("CPU", args[0])
	if err != nil {
		return nil, err
	}
	p := e.paths.SysPath("devices/system/cpu", fmt.Sprintf("cpu%d", cpu), "online")
	data := map[string]any{"cpu": cpu}
	if len(args) > 1 {
		start := time.Now()
		if err := writeOnce(p, args[1]+"\n"); err != nil {
			return data, err
		}
		data["write_us"] = time.Since(start).Microseconds()
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		return data, fmt.Errorf("reading %s: %w", p, err)
	}
	data["online"] = strings.TrimSpace(string(raw)) == "1"
	return data, nil
}
