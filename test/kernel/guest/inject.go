package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// mceRecord is what one mce-inject injection writes.
type mceRecord struct {
	bank   int
	status uint64
	addr   uint64
	misc   uint64
}

// Bank and status values verified in the kernel lab for QEMU's CPU models:
// AMD's DRAM ECC lives in bank 4, the Intel model's memory controller in
// bank 7. misc 0x8c = physical address mode, low 12 address bits invalid.
const (
	statusMemCEAMD   = 0x9c0000000008011b
	statusMemUCAMD   = 0xbc0000000008011b
	statusMemCEIntel = 0x9c00000000000090
	statusMemUCIntel = 0xbc00000000000090
	statusCacheCE    = 0x9000000000000134 // MCACOD 0x134: generic cache read error
	miscPhysAddr4K   = 0x8c
)

func memRecord(vendor string, addr uint64, uncorrected bool) (mceRecord, error) {
	switch vendor {
	case "AuthenticAMD":
		st := uint64(statusMemCEAMD)
		if uncorrected {
			st = statusMemUCAMD
		}
		return mceRecord{bank: 4, status: st, addr: addr, misc: miscPhysAddr4K}, nil
	case "GenuineIntel":
		st := uint64(statusMemCEIntel)
		if uncorrected {
			st = statusMemUCIntel
		}
		return mceRecord{bank: 7, status: st, addr: addr, misc: miscPhysAddr4K}, nil
	default:
		return mceRecord{}, fmt.Errorf("no memory-error bank known for CPU vendor %q", vendor)
	}
}

// cpuVendor reads vendor_id from /proc/cpuinfo.
func (e env) cpuVendor() (string, error) {
	p := e.paths.ProcPath("cpuinfo")
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "vendor_id" {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no vendor_id in %s", p)
}

// inject writes one record through debugfs mce-inject. The calling thread
// is pinned to cpu first, as in the captures: the record is then logged by
// a kworker on that CPU. Every value ends in a newline because the flags
// file drops the last byte written. Writing bank triggers the injection;
// with a marker (a trace_marker file, open), a line naming the address
// goes into that trace instance just before, so the injection is dated on
// the instance's clock with whatever the kernel traces after it.
func (e env) inject(cpu int, r mceRecord, marker *os.File) (bankMono int64, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return 0, fmt.Errorf("pinning to CPU %d: %w", cpu, err)
	}
	dir := e.paths.DebugPath("mce-inject")
	steps := []struct{ file, value string }{
		{"cpu", fmt.Sprint(cpu)},
		{"status", hex(r.status)},
		{"addr", hex(r.addr)},
		{"misc", hex(r.misc)},
		{"synd", "0"},
		{"flags", "sw"},
		{"bank", fmt.Sprint(r.bank)},
	}
	for _, s := range steps {
		p := filepath.Join(dir, s.file)
		if s.file == "bank" {
			if marker != nil {
				if _, err := fmt.Fprintf(marker, "%s addr=%s\n", injectMark, hex(r.addr)); err != nil {
					return 0, fmt.Errorf("marking the injection in %s: %w", marker.Name(), err)
				}
			}
			bankMono = monoMicros()
		}
		if err := writeOnce(p, s.value+"\n"); err != nil {
			return bankMono, err
		}
	}
	return bankMono, nil
}

// writeOnce writes data to an existing kernel file in one write(2) and
// returns that write's error (sysfs and debugfs report errors there).
func writeOnce(p, data string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", p, err)
	}
	if _, err := f.Write([]byte(data)); err != nil {
		f.Close()
		return fmt.Errorf("writing %q to %s: %w", strings.TrimSpace(data), p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", p, err)
	}
	return nil
}

// injectMark starts the trace_marker line of a marked injection.
const injectMark = "selfprotect-inject"

func cmdInjectMem(e env, args []string) (map[string]any, error) {
	cpu, err := parseInt("CPU", args[0])
	if err != nil {
		return nil, err
	}
	addr, err := parseUint("address", args[1])
	if err != nil {
		return nil, err
	}
	uc := false
	var marker *os.File
	for _, opt := range args[2:] {
		name, isMark := strings.CutPrefix(opt, "mark=")
		switch {
		case opt == "UC":
			uc = true
		case isMark:
			p := e.paths.TracingPath("instances", name, "trace_marker")
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return nil, fmt.Errorf("opening %s: %w", p, err)
			}
			defer f.Close()
			marker = f
		default:
			return nil, fmt.Errorf("inject-mem option %q: want UC or mark=INSTANCE", opt)
		}
	}
	vendor, err := e.cpuVendor()
	if err != nil {
		return nil, err
	}
	r, err := memRecord(vendor, addr, uc)
	if err != nil {
		return nil, err
	}
	data := map[string]any{"cpu": cpu, "bank": r.bank, "status": hex(r.status), "addr": hex(addr), "vendor": vendor}
	// bank_mono_us is the injection: the kernel may log the record (and
	// CEC act on it) before the bank write returns at mono_us.
	data["bank_mono_us"], err = e.inject(cpu, r, marker)
	data["mono_us"] = monoMicros()
	return data, err
}

func cmdInjectCache(e env, args []string) (map[string]any, error) {
	cpu, err := parseInt("CPU", args[0])
	if err != nil {
		return nil, err
	}
	r := mceRecord{bank: 1, status: statusCacheCE}
	bankMono, err := e.inject(cpu, r, nil)
	return map[string]any{"cpu": cpu, "bank": r.bank, "status": hex(r.status), "bank_mono_us": bankMono, "mono_us": monoMicros()}, err
}
