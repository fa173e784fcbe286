// Package procmem sorts a process's resident set by what holds it, read
// from /proc/PID/smaps: the idle benchmarks (simulator and guest) report
// the daemon's RSS this way, because "RSS 19 MiB" alone cannot say
// whether the heap, the runtime or the binary's clean page cache grew.
package procmem

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// The parts a resident set is split into, in report order.
const (
	Text      = "text"     // the executable's code (r-x)
	ROData    = "rodata"   // its read-only data and function tables (r--)
	Data      = "data"     // its writable data (rw-, file-backed part)
	Anon      = "anon"     // anonymous memory: the Go heap and stacks, bss, runtime metadata, SQLite's C heap
	Stack     = "stack"    // the main thread's stack
	BPF       = "bpf"      // mmap'ed BPF maps (the ring buffer: its data pages map twice)
	Kernel    = "vdso"     // vdso, vvar, vsyscall
	OtherFile = "file"     // other file-backed mappings (SQLite's -shm, libraries)
	NamedRun  = "go-named" // anonymous mappings the Go runtime named ([anon: Go: ...])
)

var order = []string{Text, ROData, Data, Anon, NamedRun, Stack, BPF, OtherFile, Kernel}

// Part is one kind of mapping's resident set, in kB.
type Part struct {
	Name string
	RSS  uint64 // kB resident
	Anon uint64 // kB of it anonymous (dirty private copies included)
	Huge uint64 // kB of it in transparent huge pages
}

// Breakdown is a process's resident set by part, in kB.
type Breakdown struct {
	Parts []Part // in report order, empty parts left out
	RSS   uint64 // sum of every mapping's Rss
	Anon  uint64 // sum of every mapping's Anonymous
	Huge  uint64 // sum of every mapping's AnonHugePages, FilePmdMapped, ShmemPmdMapped
}

// Part returns the named part's figures (zero when absent).
func (b Breakdown) Part(name string) Part {
	for _, p := range b.Parts {
		if p.Name == name {
			return p
		}
	}
	return Part{Name: name}
}

// String is one line in MiB: "RSS 9.3 (anon 4.6): text 3.1, rodata 1.2, ...".
func (b Breakdown) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "RSS %.1f MiB (anon %.1f, file %.1f, huge pages %.1f):", mib(b.RSS), mib(b.Anon), mib(b.RSS-b.Anon), mib(b.Huge))
	for i, p := range b.Parts {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, " %s %.2f", p.Name, mib(p.RSS))
	}
	return sb.String()
}

// KB is the breakdown as flat numbers (kB), for a JSON result line:
// "rss", "anon" and "rss_PART" for each part.
func (b Breakdown) KB() map[string]any {
	out := map[string]any{"rss": b.RSS, "anon": b.Anon, "huge": b.Huge}
	for _, p := range b.Parts {
		out["rss_"+p.Name] = p.RSS
	}
	return out
}

func mib(kb uint64) float64 { return float64(kb) / 1024 }

// Parse reads /proc/PID/smaps. The executable is the first file-backed
// mapping (a static Go binary maps nothing before itself).
func Parse(smaps []byte) (Breakdown, error) {
	sums := map[string]*Part{}
	var b Breakdown
	var exe, part string
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if isHeader(f[0]) {
			if len(f) < 5 || len(f[1]) != 4 {
				return Breakdown{}, fmt.Errorf("smaps line %d: bad mapping %q", lineNo, line)
			}
			name := ""
			if len(f) >= 6 {
				name = strings.Join(f[5:], " ")
			}
			if exe == "" && f[4] != "0" {
				exe = name
			}
			part = classify(f[1], f[4], name, exe)
			continue
		}
		key := strings.TrimSuffix(f[0], ":")
		switch key {
		case "Rss", "Anonymous", "AnonHugePages", "FilePmdMapped", "ShmemPmdMapped":
		default:
			continue
		}
		if part == "" {
			return Breakdown{}, fmt.Errorf("smaps line %d: %s before any mapping", lineNo, key)
		}
		if len(f) < 2 {
			return Breakdown{}, fmt.Errorf("smaps line %d: %q has no value", lineNo, line)
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return Breakdown{}, fmt.Errorf("smaps line %d: %s: %w", lineNo, key, err)
		}
		p := sums[part]
		if p == nil {
			p = &Part{Name: part}
			sums[part] = p
		}
		switch key {
		case "Rss":
			p.RSS += n
			b.RSS += n
		case "Anonymous":
			p.Anon += n
			b.Anon += n
		default:
			p.Huge += n
			b.Huge += n
		}
	}
	if err := sc.Err(); err != nil {
		return Breakdown{}, fmt.Errorf("reading smaps: %w", err)
	}
	if exe == "" {
		return Breakdown{}, fmt.Errorf("smaps: no file-backed mapping (not an smaps file?)")
	}
	for _, name := range order {
		if p := sums[name]; p != nil && p.RSS > 0 {
			b.Parts = append(b.Parts, *p)
		}
	}
	return b, nil
}

// isHeader tells a mapping's first line ("start-end perms ...") from its
// "Key: value" lines.
func isHeader(field string) bool {
	lo, hi, ok := strings.Cut(field, "-")
	if !ok || strings.HasSuffix(field, ":") {
		return false
	}
	_, err1 := strconv.ParseUint(lo, 16, 64)
	_, err2 := strconv.ParseUint(hi, 16, 64)
	return err1 == nil && err2 == nil
}

func classify(perms, inode, name, exe string) string {
	switch {
	case name == exe && perms[2] == 'x':
		return Text
	case name == exe && perms[1] == 'w':
		return Data
	case name == exe:
		return ROData
	case name == "[stack]":
		return Stack
	case name == "[vdso]" || name == "[vsyscall]" || strings.HasPrefix(name, "[vvar"):
		return Kernel
	case strings.Contains(name, "bpf"):
		return BPF
	case strings.HasPrefix(name, "[anon: Go") || strings.HasPrefix(name, "[anon:Go"):
		return NamedRun
	case inode != "0" && name != "":
		return OtherFile
	default:
		return Anon
	}
}
