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

var traceTimeRE = regexp.MustCompile(`\s([0-9]+)\.([0-9]{6}): mce_record: .*ADDR(?:/MISC/SYND)?: ([0-9a-f]{16})`)

// TraceRecordTimes maps each physical address to the timestamps (µs) of
// its mce_record lines, in order. The instance must use trace_clock mono
// for these to compare with the helpers' mono_us.
func TraceRecordTimes(lines []string) map[uint64][]int64 {
	out := map[uint64][]int64{}
	for _, l := range lines {
		m := traceTimeRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		sec, _ := strconv.ParseInt(m[1], 10, 64)
		frac, _ := strconv.ParseInt(m[2], 10, 64)
		addr, err := strconv.ParseUint(m[3], 16, 64)
		if err != nil {
			continue
		}
		out[addr] = append(out[addr], sec*1_000_000+frac)
	}
	return out
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
