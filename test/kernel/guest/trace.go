package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// cmdTraceStart makes a tracefs instance that records mce:mce_record, so
// the suite can count what the tracepoint delivered independently of the
// daemon's own instance. Options after NAME: clock=CLOCK (mono makes the
// record timestamps comparable with the helpers' mono_us), kb=N (per-CPU
// buffer size, so a storm is not lost to an overrun), event=SYS/NAME (one
// more event to record).
func cmdTraceStart(e env, args []string) (map[string]any, error) {
	inst := e.paths.TracingPath("instances", args[0])
	if err := os.Mkdir(inst, 0o755); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("creating instance %s: %w", inst, err)
	}
	writes := []struct{ file, value string }{{"buffer_percent", "0"}, {"events/mce/mce_record/enable", "1"}}
	for _, opt := range args[1:] {
		k, v, ok := strings.Cut(opt, "=")
		switch {
		case ok && k == "clock":
			writes = append(writes, struct{ file, value string }{"trace_clock", v})
		case ok && k == "kb":
			writes = append(writes, struct{ file, value string }{"buffer_size_kb", v})
		case ok && k == "event":
			writes = append(writes, struct{ file, value string }{"events/" + v + "/enable", "1"})
		default:
			return nil, fmt.Errorf("trace-start option %q: want clock=, kb= or event=", opt)
		}
	}
	writes = append(writes, struct{ file, value string }{"tracing_on", "1"})
	for _, w := range writes {
		if err := writeOnce(inst+"/"+w.file, w.value+"\n"); err != nil {
			return nil, err
		}
	}
	return map[string]any{"instance": args[0]}, nil
}

// cmdTraceCount reads the instance's non-consuming trace file. With WANT
// it re-reads until at least WANT mce_record lines are there or TIMEOUT
// passes: records reach the buffer from a kworker, after the injecting
// write has returned. WANT "stable" re-reads until two reads 500 ms apart
// agree (after a storm, when the delivered count is the unknown). Lines
// are carried only when few: a storm's 10 000 would flood the console.
func cmdTraceCount(e env, args []string) (map[string]any, error) {
	want, timeout := 0, 5*time.Second
	stable := len(args) > 1 && args[1] == "stable"
	if len(args) > 1 && !stable {
		n, err := parseInt("wanted count", args[1])
		if err != nil {
			return nil, err
		}
		want = n
	}
	if len(args) > 2 {
		d, err := time.ParseDuration(args[2])
		if err != nil {
			return nil, fmt.Errorf("parsing timeout %q: %w", args[2], err)
		}
		timeout = d
	}
	p := e.paths.TracingPath("instances", args[0], "trace")
	deadline := time.Now().Add(timeout)
	last := -1
	for {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		var lines []string
		var others []string
		for _, l := range strings.Split(string(raw), "\n") {
			switch {
			case strings.Contains(l, "mce_record:"):
				lines = append(lines, strings.TrimSpace(l))
			case l != "" && !strings.HasPrefix(l, "#"):
				others = append(others, strings.TrimSpace(l))
			}
		}
		data := map[string]any{"mce_record": len(lines), "other_events": len(others)}
		if len(lines) <= maxCarriedLines {
			data["lines"] = lines
		}
		if len(others) <= maxCarriedLines {
			data["other_lines"] = others
		}
		if stable {
			if len(lines) == last {
				return data, nil
			}
			last = len(lines)
			if time.Now().After(deadline) {
				return data, fmt.Errorf("mce_record count still changing after %s (%d)", timeout, len(lines))
			}
			time.Sleep(500 * time.Millisecond)
			continue
		}
		if len(lines) >= want {
			return data, nil
		}
		if time.Now().After(deadline) {
			return data, fmt.Errorf("%d mce_record lines after %s, want %d", len(lines), timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// maxCarriedLines bounds how many trace lines one result line carries.
const maxCarriedLines = 100
