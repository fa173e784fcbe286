package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	kpfHWPoison   = 19 // KPF_HWPOISON in /proc/kpageflags
	pagemapPresnt = uint64(1) << 63
	pagemapPFN    = uint64(1)<<55 - 1
)

// pageSize is the guest's base page size (4 KiB on x86-64).
var pageSize = os.Getpagesize()

// physOf returns the PFN backing the virtual address va of this process,
// read from /proc/self/pagemap (root only: others see PFN 0).
func (e env) physOf(va uintptr) (uint64, error) {
	p := e.paths.ProcPath("self/pagemap")
	f, err := os.Open(p)
	if err != nil {
		return 0, fmt.Errorf("opening %s: %w", p, err)
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], int64(va/uintptr(pageSize))*8); err != nil {
		return 0, fmt.Errorf("reading %s at %#x: %w", p, va, err)
	}
	entry := binary.LittleEndian.Uint64(b[:])
	if entry&pagemapPresnt == 0 {
		return 0, fmt.Errorf("page at %#x not present (pagemap entry %#x)", va, entry)
	}
	pfn := entry & pagemapPFN
	if pfn == 0 {
		return 0, errors.New("pagemap shows PFN 0: not running as root?")
	}
	return pfn, nil
}

// kpageflags reads the flags word of one PFN.
func (e env) kpageflags(pfn uint64) (uint64, error) {
	p := e.paths.ProcPath("kpageflags")
	f, err := os.Open(p)
	if err != nil {
		return 0, fmt.Errorf("opening %s: %w", p, err)
	}
	defer f.Close()
	return readFlags(f, pfn)
}

func readFlags(f *os.File, pfn uint64) (uint64, error) {
	var b [8]byte
	if _, err := f.ReadAt(b[:], int64(pfn)*8); err != nil {
		return 0, fmt.Errorf("reading kpageflags of PFN %#x: %w", pfn, err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func cmdKpf(e env, args []string) (map[string]any, error) {
	pfn, err := parseUint("PFN", args[0])
	if err != nil {
		return nil, err
	}
	flags, err := e.kpageflags(pfn)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pfn": hex(pfn), "flags": hex(flags), "hwpoison": flags&(1<<kpfHWPoison) != 0}, nil
}

// pattern is the value of word w of page p, distinct for every word so a
// page moved to the wrong place or zeroed is caught.
func pattern(p, w int) uint64 { return 0x5e1f9a0700000000 ^ uint64(p)<<20 ^ uint64(w) }

// cmdHold keeps N anonymous pages mapped and filled, publishes where they
// live (DIR/addrN: physical byte address, DIR/pfnN, then DIR/ready), waits
// for DIR/release and checks every word survived (e.g. a soft offline).
func cmdHold(e env, args []string) (map[string]any, error) {
	n, err := parseInt("page count", args[0])
	if err != nil {
		return nil, err
	}
	if n < 1 || n > 4096 {
		return nil, fmt.Errorf("page count %d out of range 1..4096", n)
	}
	dir := args[1]
	mem, err := unix.Mmap(-1, 0, n*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %d pages: %w", n, err)
	}
	words := pageSize / 8
	fill := func() {
		for p := 0; p < n; p++ {
			for w := 0; w < words; w++ {
				binary.LittleEndian.PutUint64(mem[p*pageSize+w*8:], pattern(p, w))
			}
		}
	}
	fill()
	pfns := func() ([]string, []uint64, error) {
		var s []string
		var v []uint64
		for p := 0; p < n; p++ {
			pfn, err := e.physOf(uintptr(unsafe.Pointer(&mem[p*pageSize])))
			if err != nil {
				return nil, nil, err
			}
			s, v = append(s, hex(pfn)), append(v, pfn)
		}
		return s, v, nil
	}
	before, beforeV, err := pfns()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for i, pfn := range beforeV {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("addr%d", i)), []byte(hex(pfn*uint64(pageSize))+"\n"), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("pfn%d", i)), []byte(hex(pfn)+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
		return nil, err
	}
	emit(result{Step: "hold-ready", OK: true, Data: map[string]any{"pfns": before, "pid": os.Getpid()}})

	release := filepath.Join(dir, "release")
	for {
		if _, err := os.Stat(release); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	bad := 0
	for p := 0; p < n; p++ {
		for w := 0; w < words; w++ {
			if binary.LittleEndian.Uint64(mem[p*pageSize+w*8:]) != pattern(p, w) {
				bad++
			}
		}
	}
	after, _, err := pfns()
	data := map[string]any{"pfns_before": before, "pfns_after": after, "bad_words": bad}
	if err != nil {
		return data, err
	}
	if bad > 0 {
		return data, fmt.Errorf("%d words of the held pages changed", bad)
	}
	return data, nil
}

// cmdWaitPoisoned polls kpageflags until PFN carries HWPOISON and reports
// the CLOCK_MONOTONIC time it saw it (mono_us), which the host subtracts
// from the deciding injection's mono_us: the latency metric's probe. The
// optional INTERVAL (default 1ms, 0 = tight loop) matters because under
// single-threaded TCG all vCPUs share one host thread, so a tight poll
// slows down the daemon it is measuring. The optional READY file is
// created after the first poll, so a script can inject only once the
// probe is watching (a probe still starting would add its start-up time).
func cmdWaitPoisoned(e env, args []string) (map[string]any, error) {
	pfn, err := parseUint("PFN", args[0])
	if err != nil {
		return nil, err
	}
	timeout, err := time.ParseDuration(args[1])
	if err != nil {
		return nil, fmt.Errorf("parsing timeout %q: %w", args[1], err)
	}
	interval := time.Millisecond
	if len(args) > 2 {
		if interval, err = time.ParseDuration(args[2]); err != nil {
			return nil, fmt.Errorf("parsing interval %q: %w", args[2], err)
		}
	}
	p := e.paths.ProcPath("kpageflags")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", p, err)
	}
	defer f.Close()
	ready := ""
	if len(args) > 3 {
		ready = args[3]
	}
	start := time.Now()
	for polls := 1; ; polls++ {
		flags, err := readFlags(f, pfn)
		if err != nil {
			return nil, err
		}
		if polls == 1 && ready != "" {
			if err := os.WriteFile(ready, nil, 0o644); err != nil {
				return nil, fmt.Errorf("creating %s: %w", ready, err)
			}
		}
		elapsed := time.Since(start)
		if flags&(1<<kpfHWPoison) != 0 {
			return map[string]any{"pfn": hex(pfn), "elapsed_us": elapsed.Microseconds(), "polls": polls, "mono_us": monoMicros()}, nil
		}
		if elapsed > timeout {
			return map[string]any{"pfn": hex(pfn), "elapsed_us": elapsed.Microseconds(), "polls": polls},
				fmt.Errorf("PFN %#x not poisoned after %s", pfn, timeout)
		}
		if interval > 0 {
			time.Sleep(interval)
		}
	}
}

// monoMicros is CLOCK_MONOTONIC in µs, comparable across guest processes
// (Go's own monotonic clock is per process).
func monoMicros() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return -1
	}
	return ts.Nano() / 1000
}
