package kernel

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// StampedLine is one daemon log line as stamp-run printed it (prefixed
// "[daemon] " on the console): CLOCK_MONOTONIC µs and the text.
type StampedLine struct {
	MonoUS int64
	Text   string
}

var stampedRE = regexp.MustCompile(`^\[daemon\] ([0-9]+) (.*)$`)

// DaemonLog extracts the stamped daemon log lines from a console.
func DaemonLog(console string) []StampedLine {
	var out []StampedLine
	for _, l := range strings.Split(strings.ReplaceAll(console, "\r", ""), "\n") {
		m := stampedRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		us, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, StampedLine{MonoUS: us, Text: m[2]})
	}
	return out
}

// FirstAfter returns the stamp of the first line at or after from that
// contains every needle, or -1.
func FirstAfter(lines []StampedLine, from int64, needles ...string) int64 {
	for _, l := range lines {
		if l.MonoUS < from {
			continue
		}
		ok := true
		for _, n := range needles {
			ok = ok && strings.Contains(l.Text, n)
		}
		if ok {
			return l.MonoUS
		}
	}
	return -1
}

// traceLineRE splits an ftrace text line: task-pid, [cpu], the optional
// flags column, seconds.micros, event name, the event's fields.
var traceLineRE = regexp.MustCompile(`^\s*(.*)-([0-9]+)\s+\[([0-9]+)\]\s+(?:\S+\s+)?([0-9]+)\.([0-9]{6}): ([A-Za-z0-9_]+): ?(.*)$`)

// traceLine is one parsed ftrace line.
type traceLine struct {
	pid    int
	us     int64
	event  string
	fields string
}

func parseTraceLine(l string) (traceLine, bool) {
	m := traceLineRE.FindStringSubmatch(l)
	if m == nil {
		return traceLine{}, false
	}
	pid, err1 := strconv.Atoi(m[2])
	sec, err2 := strconv.ParseInt(m[4], 10, 64)
	frac, err3 := strconv.ParseInt(m[5], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return traceLine{}, false
	}
	return traceLine{pid: pid, us: sec*1_000_000 + frac, event: m[6], fields: m[7]}, true
}

// mceAddrRE is an mce_record's address, on 6.1 (ADDR:) and 6.12
// (ADDR/MISC/SYND:).
var mceAddrRE = regexp.MustCompile(`ADDR(?:/MISC/SYND)?: ([0-9a-f]{16})`)

// The latency bench's probes (guest trace-start kprobe=, inject-mem mark=).
const (
	offlineEntry  = "soft_offline_page"
	offlineReturn = "soft_offline_page_ret"
	injectMarker  = "selfprotect-inject addr="
)

// KernelTimeline is one marked injection as the bench's trace instance
// saw it, every stamp on that instance's clock (µs): the injector's
// marker just before its injecting write, the first mce_record of the
// address after it, the first entry to soft_offline_page for its page
// after the marker, and that call's return (with its value). A stamp the
// trace lacks is 0: the page was not offlined.
//
// The record's stamp is when the bench's own instance took it, which is
// not always before the offline: the tracepoint runs its probes in the
// order they were attached (the daemon's first), and under
// single-threaded TCG the wake-up the daemon's probe sends can switch the
// emulator to the daemon's vCPU before the bench's probe runs.
type KernelTimeline struct {
	Addr                                uint64
	Marked, Recorded, Entered, Returned int64
	Ret                                 int64
}

// Offlined says whether the timeline reaches a soft_offline_page return.
func (k KernelTimeline) Offlined() bool { return k.Returned != 0 }

// KernelTimelines reads the lines of one trace instance (in any order:
// mce_record's and the rest come apart) into one timeline per marker, in
// the markers' order. Whoever offlines the page (CEC's kworker, the
// daemon's write) is matched the same way: by the pfn in the entry's
// first argument, and by pid from the entry to its return.
func KernelTimelines(lines []string) []KernelTimeline {
	var all []traceLine
	for _, l := range lines {
		if tl, ok := parseTraceLine(l); ok {
			all = append(all, tl)
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].us < all[j].us })
	var out []KernelTimeline
	for i, tl := range all {
		if tl.event != "tracing_mark_write" {
			continue
		}
		at := strings.Index(tl.fields, injectMarker)
		if at < 0 {
			continue
		}
		rest := strings.Fields(tl.fields[at+len(injectMarker):])
		if len(rest) == 0 {
			continue
		}
		addr, err := strconv.ParseUint(strings.TrimPrefix(rest[0], "0x"), 16, 64)
		if err != nil {
			continue
		}
		out = append(out, follow(all[i+1:], KernelTimeline{Addr: addr, Marked: tl.us}))
	}
	return out
}

// follow fills k's later stamps from the lines after its marker.
func follow(after []traceLine, k KernelTimeline) KernelTimeline {
	pfn := k.Addr >> 12
	entryPID := -1
	for _, tl := range after {
		switch {
		case tl.event == "mce_record" && k.Recorded == 0:
			if m := mceAddrRE.FindStringSubmatch(tl.fields); m != nil {
				if a, err := strconv.ParseUint(m[1], 16, 64); err == nil && a == k.Addr {
					k.Recorded = tl.us
				}
			}
		case tl.event == offlineEntry && k.Entered == 0:
			if traceField(tl.fields, "arg1") == pfn {
				k.Entered, entryPID = tl.us, tl.pid
			}
		case tl.event == offlineReturn && k.Entered != 0 && k.Returned == 0 && tl.pid == entryPID:
			k.Returned, k.Ret = tl.us, int64(traceField(tl.fields, "ret"))
		}
		if k.Returned != 0 && k.Recorded != 0 {
			break
		}
	}
	return k
}

// traceField is the number key=N (hex with 0x, or decimal) among an
// event's fields, or ^0 when absent.
func traceField(fields, key string) uint64 {
	for _, f := range strings.Fields(fields) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k != key {
			continue
		}
		if x, err := strconv.ParseInt(v, 0, 64); err == nil {
			return uint64(x)
		}
	}
	return ^uint64(0)
}

// Median of xs (0 for none); xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
