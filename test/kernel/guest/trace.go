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
// more event to record), kprobe=FUNC (FUNC's entry with its first
// argument, and its return, as events bench/FUNC and bench/FUNC_ret).
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
		case ok && k == "kprobe":
			if err := e.defineKprobes(v); err != nil {
				return nil, err
			}
			writes = append(writes, struct{ file, value string }{"events/" + kprobeGroup + "/" + v + "/enable", "1"},
				struct{ file, value string }{"events/" + kprobeGroup + "/" + v + "_ret/enable", "1"})
		default:
			return nil, fmt.Errorf("trace-start option %q: want clock=, kb=, event= or kprobe=", opt)
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

// kprobeGroup holds the probes trace-start defines.
const kprobeGroup = "bench"

// defineKprobes defines an entry probe on fn, with its first argument
// (arg1), and a return probe (ret), unless an earlier trace-start in this
// boot did: the definitions are global, each instance enables its own.
func (e env) defineKprobes(fn string) error {
	if _, err := os.Stat(e.paths.TracingPath("events", kprobeGroup, fn)); err == nil {
		return nil
	}
	p := e.paths.TracingPath("kprobe_events")
	// O_APPEND, never O_TRUNC: truncating the file deletes every probe.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", p, err)
	}
	defer f.Close()
	for _, def := range []string{
		fmt.Sprintf("p:%s/%s %s arg1=$arg1:x64", kprobeGroup, fn, fn),
		fmt.Sprintf("r:%s/%s_ret %s ret=$retval:s64", kprobeGroup, fn, fn),
	} {
		if _, err := f.WriteString(def + "\n"); err != nil {
			return fmt.Errorf("defining %q in %s: %w", def, p, err)
		}
	}
	return nil
}

// cmdTraceCount reads the instance's non-consuming trace file. With WANT
// it re-reads until at least WANT mce_record lines are there or TIMEOUT
// passes: records reach the buffer from a kworker, after the injecting
// write has returned. WANT "stable" re-reads until two reads 500 ms apart
// agree (after a storm, when the delivered count is the unknown). Lines
// (mce_record's, the rest's) are carried only when few: a storm's 10 000
// would flood the console. carry=N, anywhere after NAME, raises "few" to
// N for a caller that dates its records from them.
func cmdTraceCount(e env, args []string) (map[string]any, error) {
	carry := maxCarriedLines
	var positional []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "carry="); ok {
			n, err := parseInt("carry", v)
			if err != nil {
				return nil, err
			}
			carry = n
			continue
		}
		positional = append(positional, a)
	}
	args = positional
	if len(args) == 0 {
		return nil, fmt.Errorf("trace-count needs an instance name")
	}
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
		if len(lines) <= carry {
			data["lines"] = lines
		}
		if len(others) <= carry {
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
