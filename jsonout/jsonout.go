// Package jsonout is the JSON the command line prints with --json: output
// types of their own, apart from the domain and store types, so a refactor
// inside cannot rename what a tool outside reads. Field names are
// snake_case, enums are their string names, times RFC 3339 in UTC, 64-bit
// registers and addresses hex strings (a JSON number loses their low bits
// in most parsers), lists never null. doc/json.md describes the outputs;
// doc/json-schema.json is generated from these types (Schema) and a test
// pins it, so a renamed, removed or added field fails until the schema,
// and so its readers, are updated on purpose.
package jsonout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
	"github.com/selfprotect/selfprotect/store"
	"github.com/selfprotect/selfprotect/strictyaml"
)

// Severity, Class and ActionKind are fault's enums as their names.
type (
	Severity   string
	Class      string
	ActionKind string
)

// Case is one case of `faulty --json` and `explain --json`.
type Case struct {
	ID        string          `json:"id" desc:"case UUID"`
	Opened    time.Time       `json:"opened" desc:"when the case was diagnosed"`
	Rule      string          `json:"rule" desc:"policy rule that opened it: page, dimm, row, cpu, cache, uncorrected, storm"`
	Diagnosis fault.Diagnosis `json:"diagnosis"`
	Suspect   fault.Resource  `json:"suspect" desc:"resource to isolate: page:0xPFN, cpu:N, dimm:mcM/LABEL, row:KEY, socket:N, machine"`
	Also      []string        `json:"also" desc:"further resources the action covers (SMT siblings, the row's pages)"`
	FRU       string          `json:"fru" desc:"what a technician replaces (DIMM label, CPU socket)"`
	State     fault.CaseState `json:"state"`
	Summary   string          `json:"summary"`
	Evidence  []Evidence      `json:"evidence" desc:"the events that tripped the rule, oldest first (at most engine.evidence)"`
	Actions   []Action        `json:"actions" desc:"every action on the case, oldest first"`
}

// Evidence is one event a case keeps.
type Evidence struct {
	Time     time.Time    `json:"time" desc:"when the daemon read the record"`
	Source   fault.Source `json:"source"`
	Severity Severity     `json:"severity"`
	Class    Class        `json:"class"`
	Count    uint32       `json:"count" desc:"errors the record stands for"`
	CPU      int          `json:"cpu" desc:"-1 when unknown"`
	Bank     int          `json:"bank" desc:"MCA bank, -1 when unknown"`
	Status   string       `json:"status" desc:"MCi_STATUS, hex"`
	Addr     string       `json:"addr" desc:"physical address, hex; 0x0 when the record had none"`
	DIMM     string       `json:"dimm" desc:"DIMM label, empty when unknown"`
	Summary  string       `json:"summary"`
}

// Action is one attempt (or refusal) to isolate one resource.
type Action struct {
	Time       time.Time      `json:"time"`
	Resource   fault.Resource `json:"resource"`
	Kind       ActionKind     `json:"kind"`
	Outcome    fault.Outcome  `json:"outcome"`
	Violations []string       `json:"violations" desc:"budgets or rules a refusal broke"`
	Attempts   int            `json:"attempts"`
	Detail     string         `json:"detail"`
	Undo       string         `json:"undo" desc:"shell command that reverses the action, empty if none"`
}

// Explain is `explain --json`: the case with its state history.
type Explain struct {
	Case    Case          `json:"case"`
	History []StateChange `json:"history" desc:"every state the case went through, oldest first"`
}

// StateChange is one step of a case's life.
type StateChange struct {
	At    time.Time       `json:"at"`
	State fault.CaseState `json:"state"`
	Note  string          `json:"note"`
}

// Event is one record of `events --json`.
type Event struct {
	Time     time.Time    `json:"time" desc:"when the daemon read the record"`
	Source   fault.Source `json:"source"`
	Severity Severity     `json:"severity"`
	Class    Class        `json:"class"`
	Count    uint32       `json:"count" desc:"errors the record stands for"`
	CPU      int          `json:"cpu" desc:"-1 when unknown"`
	Socket   int          `json:"socket" desc:"-1 when unknown"`
	Bank     int          `json:"bank" desc:"MCA bank, -1 when unknown"`
	Status   string       `json:"status" desc:"MCi_STATUS, hex"`
	Addr     string       `json:"addr" desc:"physical address, hex; empty when the record had no valid one"`
	MC       int          `json:"mc" desc:"EDAC memory controller, -1 when unknown"`
	DIMM     string       `json:"dimm" desc:"DIMM label, empty when unknown"`
	Row      string       `json:"row" desc:"DRAM row key, empty when unknown"`
	Summary  string       `json:"summary"`
}

// AlertTest is `alert test --json`: what each notifier answered.
type AlertTest struct {
	Notifiers []AlertResult `json:"notifiers"`
}

// AlertResult is one notifier's answer to the test alert.
type AlertResult struct {
	Name      string  `json:"name"`
	Type      string  `json:"type" desc:"email, snmp, alertmanager, webhook, exec"`
	OK        bool    `json:"ok"`
	Error     string  `json:"error" desc:"why the send failed, empty when ok"`
	Retryable bool    `json:"retryable" desc:"whether the daemon would retry this failure"`
	Seconds   float64 `json:"seconds" desc:"how long the send took"`
}

// Level is one rule's count for one resource, in `levels --json`.
type Level struct {
	Rule          string         `json:"rule" desc:"policy rule: page, dimm, dimm-pages, row-pages, cpu, cache, uncorrected, storm"`
	Resource      fault.Resource `json:"resource" desc:"page:0xPFN, cpu:N, dimm:mcM/LABEL, row:KEY, socket:N, machine"`
	Count         uint64         `json:"count" desc:"errors within the window, or distinct pages for the *-pages rules"`
	Threshold     uint64         `json:"threshold" desc:"the count at which the rule opens a case"`
	WindowSeconds float64        `json:"window_seconds" desc:"how far back the rule counts (0 for uncorrected: one error is enough)"`
	Tripped       bool           `json:"tripped" desc:"a case holds the resource: the rule stays quiet until the case is repaired or acquitted"`
}

// NewLevels converts the engines' levels; never null.
func NewLevels(in []policy.Level) []Level {
	out := make([]Level, 0, len(in))
	for _, l := range in {
		out = append(out, Level{Rule: l.Rule, Resource: l.Resource, Count: l.Count, Threshold: l.Threshold,
			WindowSeconds: l.Window.Seconds(), Tripped: l.Tripped})
	}
	return out
}

// Version is `version --json`.
type Version struct {
	Version string `json:"version"`
}

// utc drops the local zone and monotonic reading: times print as RFC 3339
// in UTC whatever the host's zone.
func utc(t time.Time) time.Time { return t.UTC().Round(0) }

func strs[T ~string](in []T) []string {
	out := make([]string, 0, len(in))
	for _, v := range in {
		out = append(out, string(v))
	}
	return out
}

// NewCase converts a stored case and its actions.
func NewCase(c fault.Case, acts []fault.Action) Case {
	out := Case{ID: c.ID, Opened: utc(c.Opened), Rule: c.Rule, Diagnosis: c.Diagnosis, Suspect: c.Suspect,
		Also: strs(c.Also), FRU: c.FRU, State: c.State, Summary: c.Summary,
		Evidence: make([]Evidence, 0, len(c.Evidence)), Actions: make([]Action, 0, len(acts))}
	for _, e := range c.Evidence {
		out.Evidence = append(out.Evidence, Evidence{Time: utc(e.Time), Source: e.Source, Severity: Severity(e.Severity.String()),
			Class: Class(e.Class.String()), Count: e.Count, CPU: e.CPU, Bank: e.Bank, Status: fault.Hex(e.Status), Addr: fault.Hex(e.Addr),
			DIMM: e.DIMM, Summary: e.Summary})
	}
	for _, a := range acts {
		v := a.Violations
		if v == nil {
			v = []string{}
		}
		out.Actions = append(out.Actions, Action{Time: utc(a.Time), Resource: a.Resource, Kind: ActionKind(a.Kind),
			Outcome: a.Outcome, Violations: v, Attempts: a.Attempts, Detail: a.Detail, Undo: a.Undo})
	}
	return out
}

// NewExplain converts a case, its actions and its history.
func NewExplain(c fault.Case, acts []fault.Action, hist []store.StateChange) Explain {
	out := Explain{Case: NewCase(c, acts), History: make([]StateChange, 0, len(hist))}
	for _, h := range hist {
		out.History = append(out.History, StateChange{At: utc(h.At), State: h.State, Note: h.Note})
	}
	return out
}

// NewEvent converts a stored event.
func NewEvent(e fault.Event) Event {
	out := Event{Time: utc(e.Received), Source: e.Source, Severity: Severity(e.Severity.String()), Class: Class(e.Class.String()),
		Count: e.Count, CPU: e.CPU, Socket: e.Socket, Bank: e.Bank, Status: fault.Hex(e.Status), MC: e.MC, DIMM: e.DIMMLabel,
		Row: e.Row, Summary: e.String()}
	if e.AddrValid {
		out.Addr = fault.Hex(e.PhysAddr)
	}
	return out
}

// Status readies a daemon's status for printing: times in UTC, lists the
// schema requires never null. Its JSON names are daemon.Status's own tags.
func Status(s daemon.Status) daemon.Status {
	s.Started = utc(s.Started)
	if s.Sources == nil {
		s.Sources = []daemon.SourceStatus{}
	}
	alerts := make([]alert.NotifierStatus, len(s.Alerts))
	for i, a := range s.Alerts {
		if !a.LastSuccess.IsZero() {
			a.LastSuccess = utc(a.LastSuccess)
		}
		if !a.LastErrorAt.IsZero() {
			a.LastErrorAt = utc(a.LastErrorAt)
		}
		alerts[i] = a
	}
	if s.Alerts != nil {
		s.Alerts = alerts
	}
	return s
}

// CheckConfig is `check-config --json`: whether a policy file is valid,
// what makes it invalid, and the settings it gives. The effective policy
// and alerts section stay YAML, their own format: a tool that reads them
// reads the policy file's format anyway, and one schema of the policy
// here would be a second to keep in step with policy.Config.
type CheckConfig struct {
	File     string          `json:"file" desc:"the file checked; empty for the built-in policy"`
	Valid    bool            `json:"valid"`
	Errors   []ConfigProblem `json:"errors" desc:"every problem found that makes the file invalid; empty when valid"`
	Warnings []string        `json:"warnings" desc:"valid but inert settings, worth a look before a reload"`
	Policy   string          `json:"policy" desc:"the effective policy as YAML; empty when invalid"`
	Alerts   string          `json:"alerts" desc:"the effective alerts: section as YAML, secrets as <secret>; empty when invalid or no notifier is configured"`
}

// ConfigProblem is one reason a configuration file is refused.
type ConfigProblem struct {
	File    string `json:"file" desc:"empty when the problem is not in a file"`
	Line    int    `json:"line" desc:"0 when unknown (a missing file, a problem of the whole file)"`
	Field   string `json:"field" desc:"dotted key path, empty when the problem is not one key"`
	Message string `json:"message" desc:"the problem alone, without file, line and field"`
}

// ConfigProblems splits a configuration error into its problems (a
// file's validation reports them all, joined), each into where and what;
// an error that names no place (an unreadable file) is charged to file.
func ConfigProblems(file string, err error) []ConfigProblem {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []ConfigProblem
		for _, e := range j.Unwrap() {
			out = append(out, ConfigProblems(file, e)...)
		}
		return out
	}
	var e *strictyaml.Error
	if errors.As(err, &e) {
		return []ConfigProblem{{File: e.File, Line: e.Line, Field: e.Field, Message: e.Msg}}
	}
	return []ConfigProblem{{File: file, Message: err.Error()}}
}

// Write prints v as indented JSON with a final newline.
func Write(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Not for a web page: "<secret>" and "must be >= 1" print as written.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}
