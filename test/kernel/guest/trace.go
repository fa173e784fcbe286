package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// cmdTraceStart makes a tracefs instance that records mce:mce_record, so
// the suite can count what the tracepoint delivered independently of the
// daemon's own instance.
func cmdTraceStart(e env, args []string) (map[string]any, error) {
	inst := e.paths.TracingPath("instances", args[0])
	if err := os.Mkdir(inst, 0o755); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("creating instance %s: %w", inst, err)
	}
	for _, w := range []struct{ file, value string }{
		{"buffer_percent", "0"},
		{"events/mce/mce_record/enable", "1"},
		{"tracing_on", "1"},
	} {
		if err := writeOnce(inst+"/"+w.file, w.value+"\n"); err != nil {
			return nil, err
		}
	}
	return map[string]any{"instance": args[0]}, nil
}

// cmdTraceCount reads the instance's non-consuming trace file. With WANT
// it re-reads until at least WANT mce_record lines are there or TIMEOUT
// passes: records reach the buffer from a kworker, after the injecting
// write has returned.
func cmdTraceCount(e env, args []string) (map[string]any, error) {
	want, timeout := 0, 5*time.Second
	if len(args) > 1 {
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
	for {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		var lines []string
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.Contains(l, "mce_record:") {
				lines = append(lines, strings.TrimSpace(l))
			}
		}
		data := map[string]any{"mce_record": len(lines), "lines": lines}
		if len(lines) >= want {
			return data, nil
		}
		if time.Now().After(deadline) {
			return data, fmt.Errorf("%d mce_record lines after %s, want %d", len(lines), timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
