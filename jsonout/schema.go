package jsonout

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/cpuoffline"
	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/pageoffline"
	"github.com/selfprotect/selfprotect/policy"
)

// Outputs are the top-level JSON values, by the command that prints them.
var Outputs = []struct {
	Command string
	Type    reflect.Type
}{
	{"status", reflect.TypeFor[daemon.Status]()},
	{"faulty", reflect.TypeFor[[]Case]()},
	{"explain", reflect.TypeFor[Explain]()},
	{"events", reflect.TypeFor[[]Event]()},
	{"version", reflect.TypeFor[Version]()},
	{"levels", reflect.TypeFor[[]Level]()},
	{"alert-test", reflect.TypeFor[AlertTest]()},
	{"check-config", reflect.TypeFor[CheckConfig]()},
	{"replay", reflect.TypeFor[Replay]()},
	{"alert-config", reflect.TypeFor[AlertConfig]()},
}

// enums lists the values of every enumerated string type, from the code's
// own constants.
func enums() map[reflect.Type][]string {
	names := func(n int, name func(int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = name(i)
		}
		return out
	}
	return map[reflect.Type][]string{
		// "kernel-isolated-page" is the daemon's case for a page the
		// kernel's memory-failure handler took by itself (daemon/kernel.go).
		reflect.TypeFor[fault.Diagnosis](): strs([]fault.Diagnosis{fault.DiagSoftOfflinePage, fault.DiagHardOfflinePage,
			fault.DiagOfflineCPU, fault.DiagOfflineRow, fault.DiagReplaceDIMM, fault.DiagAlertOnly, fault.DiagStorm,
			"kernel-isolated-page"}),
		reflect.TypeFor[fault.CaseState](): strs([]fault.CaseState{fault.CaseOpen, fault.CaseIsolated, fault.CaseFailed,
			fault.CaseRepaired, fault.CaseAcquit, fault.CaseClosed}),
		reflect.TypeFor[fault.Outcome](): strs([]fault.Outcome{fault.OutcomeIsolated, fault.OutcomeAlreadyIsolated,
			fault.OutcomeIsolatedByOther, fault.OutcomeDryRun, fault.OutcomeRefused, fault.OutcomePaused, fault.OutcomeFailed,
			fault.OutcomeNotPresent, fault.OutcomeIntended}),
		reflect.TypeFor[fault.Source](): strs([]fault.Source{fault.SourceTraceMCE, fault.SourceTraceMC, fault.SourceTraceExtlog,
			fault.SourceTraceMemoryFailure, fault.SourceEBPF, fault.SourceEBPFMC, fault.SourceEBPFExtlog,
			fault.SourceEBPFMemoryFailure, fault.SourceEDACPoll, fault.SourceMcelog, fault.SourceSimulation}),
		reflect.TypeFor[Severity]():    names(int(fault.SeverityFatal)+1, func(i int) string { return fault.Severity(i).String() }),
		reflect.TypeFor[Class]():       names(int(fault.ClassPCIe)+1, func(i int) string { return fault.Class(i).String() }),
		reflect.TypeFor[ActionKind]():  {cpuoffline.Kind, pageoffline.KindSoft, pageoffline.KindHard, "none"},
		reflect.TypeFor[policy.Mode](): strs([]policy.Mode{policy.ModeEnforce, policy.ModeDryRun}),
		reflect.TypeFor[daemon.SourceState](): strs([]daemon.SourceState{daemon.SourceArmed, daemon.SourceStandby,
			daemon.SourceUnavailable, daemon.SourceBroken}),
		// A notifier's min_severity is empty when it passes every severity.
		reflect.TypeFor[alert.Severity]():   strs(append([]alert.Severity{""}, alert.Severities()...)),
		reflect.TypeFor[alert.Transition](): strs(alert.Transitions),
	}
}

// Schema is the JSON Schema (draft 2020-12) of every output, one $defs
// entry per command, generated from the output types: a field without
// omitempty/omitzero is required, objects take no other field, enums list
// the code's values.
func Schema() ([]byte, error) {
	en := enums()
	defs := map[string]any{}
	for _, o := range Outputs {
		defs[o.Command] = typeSchema(o.Type, en)
	}
	doc := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         "https://github.com/selfprotect/selfprotect/doc/json-schema.json",
		"title":       "selfprotect --json outputs",
		"description": "One definition per command (selfprotect COMMAND --json). Generated from package jsonout by `go test ./jsonout/ -update`; see doc/json.md.",
		"$defs":       defs,
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the schema: %w", err)
	}
	return append(b, '\n'), nil
}

func typeSchema(t reflect.Type, en map[reflect.Type][]string) map[string]any {
	if vals, ok := en[t]; ok {
		return map[string]any{"type": "string", "enum": vals}
	}
	if t == reflect.TypeFor[time.Time]() {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": typeSchema(t.Elem(), en)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": typeSchema(t.Elem(), en)}
	case reflect.Pointer:
		return typeSchema(t.Elem(), en)
	case reflect.Struct:
		props := map[string]any{}
		required := []string{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if name == "" {
				// An untagged field prints its Go name: exactly what this
				// schema exists to forbid. The name shows in the diff.
				name = "UNTAGGED:" + f.Name
			}
			s := typeSchema(f.Type, en)
			if d := f.Tag.Get("desc"); d != "" {
				s["description"] = d
			}
			props[name] = s
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
				required = append(required, name)
			}
		}
		slices.Sort(required)
		return map[string]any{"type": "object", "properties": props, "required": required, "additionalProperties": false}
	}
	return map[string]any{"type": "UNSUPPORTED:" + t.String()}
}

// Validate checks one command's output against the schema (the subset
// Schema writes: type, properties, required, additionalProperties, items,
// enum, format date-time). It names the first offending path.
func Validate(schema []byte, command string, output []byte) error {
	var doc struct {
		Defs map[string]any `json:"$defs"`
	}
	if err := json.Unmarshal(schema, &doc); err != nil {
		return fmt.Errorf("parsing the schema: %w", err)
	}
	s, ok := doc.Defs[command].(map[string]any)
	if !ok {
		return fmt.Errorf("the schema has no output for %q", command)
	}
	dec := json.NewDecoder(strings.NewReader(string(output)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%s output is not JSON: %w", command, err)
	}
	return validate(s, v, "$")
}

func validate(s map[string]any, v any, path string) error {
	switch want := s["type"].(string); want {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, got %s", path, kind(v))
		}
		props, _ := s["properties"].(map[string]any)
		for _, r := range asList(s["required"]) {
			if _, ok := obj[r]; !ok {
				return fmt.Errorf("%s: missing field %q", path, r)
			}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			sub, known := props[k].(map[string]any)
			if !known {
				extra, isSchema := s["additionalProperties"].(map[string]any)
				if !isSchema {
					return fmt.Errorf("%s: field %q is not in the schema", path, k)
				}
				sub = extra
			}
			if err := validate(sub, obj[k], path+"."+k); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, got %s", path, kind(v))
		}
		items, _ := s["items"].(map[string]any)
		for i, e := range arr {
			if err := validate(items, e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a string, got %s", path, kind(v))
		}
		if enum := asList(s["enum"]); enum != nil && !slices.Contains(enum, str) {
			return fmt.Errorf("%s: %q is none of %v", path, str, enum)
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				return fmt.Errorf("%s: %q is not an RFC 3339 time", path, str)
			}
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%s: want an integer, got %s", path, kind(v))
		}
		if _, err := n.Int64(); err != nil {
			if _, err := fmt.Sscan(n.String(), new(uint64)); err != nil {
				return fmt.Errorf("%s: %s is not an integer", path, n)
			}
		}
	case "number":
		if _, ok := v.(json.Number); !ok {
			return fmt.Errorf("%s: want a number, got %s", path, kind(v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: want a boolean, got %s", path, kind(v))
		}
	default:
		return fmt.Errorf("%s: the schema's type %q is not supported", path, want)
	}
	return nil
}

func asList(v any) []string {
	l, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}
