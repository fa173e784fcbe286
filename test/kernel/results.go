package kernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
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
// the guest's writes), and kernel output may follow the JSON on its line or
// cut it in two (the tty writes a line in chunks; a printk line can land
// between them, as under an error storm): such a line is rejoined with the
// next. A result whose JSON still does not parse is returned as an error,
// not skipped, so a garbled result cannot pass silently.
func ParseResults(console string) ([]Result, error) {
	var results []Result
	var bad []string
	lines := strings.Split(strings.ReplaceAll(console, "\r", ""), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		at := strings.Index(line, resultMarker)
		if at < 0 {
			continue
		}
		body := line[at+len(resultMarker):]
		r, err := decodeResult(body)
		if err != nil {
			if joined, used, ok := rejoin(body, lines[i+1:]); ok {
				r, err = joined, nil
				i += used
			}
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%q: %v", line, err))
			continue
		}
		results = append(results, r)
	}
	if len(bad) > 0 {
		return results, fmt.Errorf("%d unparsable result lines: %s", len(bad), strings.Join(bad, "; "))
	}
	return results, nil
}

// printkInside finds a kernel log line's "[   12.345678] " prefix.
var printkInside = regexp.MustCompile(`\[\s*[0-9]+\.[0-9]+\] `)

// printkLine is a whole kernel log line.
var printkLine = regexp.MustCompile(`^\[\s*[0-9]+\.[0-9]+\] `)

// maxRejoin bounds how many console lines a cut result may span.
const maxRejoin = 64

// rejoin puts a result cut by kernel output back together: body ends in a
// printk; whole kernel lines may follow (an injection storm prints several
// per error) before the line that carries the rest of the JSON, which may
// be cut again. It returns the result and how many of rest it used.
func rejoin(body string, rest []string) (Result, int, bool) {
	for n, l := range rest {
		if n == maxRejoin {
			break
		}
		cut := printkInside.FindStringIndex(body)
		if cut == nil {
			break
		}
		if printkLine.MatchString(l) {
			continue
		}
		body = body[:cut[0]] + l
		if r, err := decodeResult(body); err == nil {
			return r, n + 1, true
		}
	}
	return Result{}, 0, false
}

// decodeResult reads the first JSON value of body; what follows it on the
// line is kernel output.
func decodeResult(body string) (Result, error) {
	var r Result
	if err := json.NewDecoder(strings.NewReader(body)).Decode(&r); err != nil {
		return r, err
	}
	if r.Step == "" {
		return r, errors.New("no step")
	}
	return r, nil
}

// Section returns the results printed after the `section NAME` marker (a
// combined boot runs several scenarios, each opened by `guest section`)
// and before the next marker.
func (rs Results) Section(name string) Results {
	var out Results
	in := false
	for _, r := range rs {
		if r.Step == sectionStep {
			in = r.String("name") == name
			continue
		}
		if in {
			out = append(out, r)
		}
	}
	return out
}

// sectionStep is the step name of the marker opening a section.
const sectionStep = "section"

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
