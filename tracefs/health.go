package tracefs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Health is what could make the daemon blind without it noticing: the
// instance gone, tracing or an event switched off by another tool
// (trace-cmd reset, an admin), events lost in the ring buffer.
type Health struct {
	InstancePresent bool
	TracingOn       bool
	// DisabledEvents are the events we enabled that are off now.
	DisabledEvents []string
	// Overrun and Dropped are events lost since OpenInstance, summed over
	// the CPUs: Overrun counts "overrun" plus "commit overrun" (overwritten
	// before we read them), Dropped counts "dropped events" (refused
	// because the buffer was full).
	Overrun, Dropped uint64
	// Problems has one sentence per problem, for logs and status: Blind's
	// then Lossy's.
	Problems []string
	// Blind are the problems that stop records from arriving at all (the
	// instance gone, tracing or an event off, a control file unreadable);
	// Lossy those that lose some (overruns, drops, unreadable stats).
	Blind, Lossy []string
	// Lost are Lossy's sentences about overruns and drops: counts that
	// only grow while the instance lives, so a caller can tell old loss
	// from new.
	Lost []string
}

// OK is true when nothing can make the daemon miss events.
func (h Health) OK() bool { return len(h.Problems) == 0 }

// CPUStats is per_cpu/cpuN/stats.
type CPUStats struct {
	Entries, Overrun, CommitOverrun, Bytes, Dropped, Read uint64
}

// ParseStats parses per_cpu/cpuN/stats ("overrun: 12" lines). Lines it does
// not need (time stamps) are ignored; a counter that is not a number is an
// error.
func ParseStats(source string, data []byte) (CPUStats, error) {
	var st CPUStats
	counters := map[string]*uint64{
		"entries": &st.Entries, "overrun": &st.Overrun, "commit overrun": &st.CommitOverrun,
		"bytes": &st.Bytes, "dropped events": &st.Dropped, "read events": &st.Read,
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line, seen := 0, 0
	for sc.Scan() {
		line++
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		dst, ok := counters[strings.TrimSpace(key)]
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
		if err != nil {
			return st, fmt.Errorf("%s:%d: %s: %w", source, line, strings.TrimSpace(key), err)
		}
		*dst = n
		seen++
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("%s: %w", source, err)
	}
	if seen == 0 {
		return st, fmt.Errorf("%s: no counters", source)
	}
	return st, nil
}

// lost is what the health check counts as lost.
func (s CPUStats) lost() (overrun, dropped uint64) { return s.Overrun + s.CommitOverrun, s.Dropped }

// readAllStats reads every CPU's stats; problems collects one sentence per
// unreadable file (nil: ignore them).
func (in *Instance) readAllStats(problems *[]string) map[int]CPUStats {
	out := make(map[int]CPUStats, len(in.cpus))
	for _, cpu := range in.cpus {
		p := filepath.Join(in.dir, "per_cpu", "cpu"+strconv.Itoa(cpu), "stats")
		data, err := in.fs.ReadFile(p)
		if err == nil {
			var st CPUStats
			if st, err = ParseStats(p, data); err == nil {
				out[cpu] = st
				continue
			}
		}
		if problems != nil {
			*problems = append(*problems, fmt.Sprintf("cpu%d: cannot read ring buffer stats: %v", cpu, err))
		}
	}
	return out
}

// sinceBaseline is the growth of a counter since OpenInstance. A counter
// below its baseline means the buffer was reset (the instance recreated),
// so all of it is new.
func sinceBaseline(now, base uint64) uint64 {
	if now < base {
		return now
	}
	return now - base
}

// Health checks the instance now.
func (in *Instance) Health() (h Health) {
	defer func() { h.Problems = append(append(h.Problems, h.Blind...), h.Lossy...) }()
	if _, err := os.Stat(in.dir); err != nil {
		h.Blind = append(h.Blind, fmt.Sprintf("tracefs instance %s is gone (%v)", in.name, err))
		return h
	}
	h.InstancePresent = true
	on, err := in.readFlag("tracing_on")
	switch {
	case err != nil:
		h.Blind = append(h.Blind, fmt.Sprintf("cannot read tracing_on of instance %s: %v", in.name, err))
	case !on:
		h.Blind = append(h.Blind, fmt.Sprintf("tracing_on is 0 in instance %s", in.name))
	default:
		h.TracingOn = true
	}
	for _, ev := range in.events {
		on, err := in.readFlag(path.Join("events", ev, "enable"))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			h.DisabledEvents = append(h.DisabledEvents, ev)
			h.Blind = append(h.Blind, fmt.Sprintf("event %s is gone from instance %s", ev, in.name))
		case err != nil:
			h.Blind = append(h.Blind, fmt.Sprintf("cannot read whether event %s is enabled: %v", ev, err))
		case !on:
			h.DisabledEvents = append(h.DisabledEvents, ev)
			h.Blind = append(h.Blind, fmt.Sprintf("event %s disabled behind our back", ev))
		}
	}
	stats := in.readAllStats(&h.Lossy)
	for _, cpu := range in.cpus {
		st, ok := stats[cpu]
		if !ok {
			continue
		}
		overrun, dropped := st.lost()
		baseOverrun, baseDropped := in.baseline[cpu].lost()
		overrun, dropped = sinceBaseline(overrun, baseOverrun), sinceBaseline(dropped, baseDropped)
		h.Overrun += overrun
		h.Dropped += dropped
		if overrun > 0 {
			h.Lost = append(h.Lost, fmt.Sprintf("cpu%d: %d events overrun", cpu, overrun))
		}
		if dropped > 0 {
			h.Lost = append(h.Lost, fmt.Sprintf("cpu%d: %d events dropped", cpu, dropped))
		}
	}
	h.Lossy = append(h.Lossy, h.Lost...)
	return h
}

// readFlag reads a 0/1 control file. Event enable files may read "1*" or
// "0*" (soft mode); the first character decides.
func (in *Instance) readFlag(rel string) (bool, error) {
	p := filepath.Join(in.dir, rel)
	data, err := in.fs.ReadFile(p)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", p, err)
	}
	t := strings.TrimSpace(string(data))
	switch {
	case strings.HasPrefix(t, "1"):
		return true, nil
	case strings.HasPrefix(t, "0"):
		return false, nil
	}
	return false, fmt.Errorf("%s: want 0 or 1, read %q", p, t)
}
