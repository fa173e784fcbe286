package kernel

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
)

// Result is one @@RESULT line the guest printed.
type Result struct {
	Step  string         `json:"step"`
	OK    bool           `json:"ok"`
	Error string         `json:"error,omitempty"`
	Data  map[string]any `json:"data,omitempty"`
}

const (
	resultMarker = "@@RESULT "
	bootedMarker = "@@BOOTED"
	doneMarker   = "@@DONE"
)

// ParseResults extracts every @@RESULT line from a console log. The marker
// may sit after kernel output on the same line (printk can interleave with
// the guest's writes); a line whose JSON does not parse is returned as an
// error, not skipped, so a garbled result cannot pass silently.
func ParseResults(console string) ([]Result, error) {
	var results []Result
	var bad []string
	sc := bufio.NewScanner(strings.NewReader(console))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		i := strings.Index(line, resultMarker)
		if i < 0 {
			continue
		}
		var r Result
		if err := json.Unmarshal([]byte(line[i+len(resultMarker):]), &r); err != nil {
			bad = append(bad, fmt.Sprintf("%q: %v", line, err))
			continue
		}
		if r.Step == "" {
			bad = append(bad, fmt.Sprintf("%q: no step", line))
			continue
		}
		results = append(results, r)
	}
	if err := sc.Err(); err != nil {
		return results, fmt.Errorf("scanning console: %w", err)
	}
	if len(bad) > 0 {
		return results, fmt.Errorf("%d unparsable result lines: %s", len(bad), strings.Join(bad, "; "))
	}
	return results, nil
}

// Results is the ordered list of a run's result lines with lookups.
type Results []Result

// Step returns the results with the given step name, in console order.
func (rs Results) Step(name string) []Result {
	var out []Result
	for _, r := range rs {
		if r.Step == name {
			out = append(out, r)
		}
	}
	return out
}

// Number reads a numeric data field (JSON numbers decode as float64).
func (r Result) Number(key string) (float64, bool) {
	v, ok := r.Data[key].(float64)
	return v, ok
}

// String reads a string data field.
func (r Result) String(key string) string {
	s, _ := r.Data[key].(string)
	return s
}

// Bool reads a boolean data field.
func (r Result) Bool(key string) (bool, bool) {
	v, ok := r.Data[key].(bool)
	return v, ok
}
