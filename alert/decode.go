package alert

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// ErrInvalid is matched (errors.Is) by every error saying the `alerts:`
// section itself is wrong, as opposed to the file being unreadable.
var ErrInvalid = errors.New("invalid alerts configuration")

// ConfigError names file, line and key:
// "selfprotect.yaml:41: alerts.notifiers[0].email.port: want an integer, got \"x\"".
type ConfigError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	s := ""
	switch {
	case e.File != "" && e.Line > 0:
		s = fmt.Sprintf("%s:%d: ", e.File, e.Line)
	case e.File != "":
		s = e.File + ": "
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Msg
}

// Is lets callers test errors.Is(err, ErrInvalid).
func (e *ConfigError) Is(target error) bool { return target == ErrInvalid }

// origin maps dotted key paths ("alerts.notifiers[0].email.host") to the
// line they were written on.
type origin struct {
	file  string
	lines map[string]int
}

func (o origin) errorf(field, format string, args ...any) *ConfigError {
	line := o.lines[field]
	// A missing key has no line: point at the nearest written parent.
	for p := field; line == 0 && p != ""; {
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
		line = o.lines[p]
	}
	return &ConfigError{File: o.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Section is the top-level key this package reads.
const Section = "alerts"

// Load reads the `alerts:` section of the configuration file at path. A
// file without the section gives DefaultConfig (no notifiers).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading alerts configuration %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse decodes the `alerts:` section of data over the defaults and
// validates it, reporting every problem at once. Other top-level keys
// belong to the policy and are ignored here. name is for messages only.
func Parse(name string, data []byte) (*Config, error) {
	cfg := DefaultConfig()
	cfg.origin = origin{file: name, lines: map[string]int{}}
	section, err := findSection(name, data)
	if err != nil {
		return nil, err
	}
	if section != nil {
		d := &decoder{origin: cfg.origin}
		d.value(section, reflect.ValueOf(cfg).Elem(), Section)
		if len(d.errs) > 0 {
			return nil, errors.Join(d.errs...)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func findSection(name string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		// The policy loader reports syntax errors with lines; repeat the
		// parser's own words rather than guess another line here.
		return nil, &ConfigError{File: name, Msg: "YAML syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, nil // the policy loader reports a non-mapping file
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == Section {
			return root.Content[i+1], nil
		}
	}
	return nil, nil
}

// decoder walks the YAML tree alongside the Config struct so each error
// names the key path the user wrote, and never echoes a secret's value.
type decoder struct {
	origin origin
	errs   []error
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	secretType   = reflect.TypeOf(Secret(""))
)

func (d *decoder) fail(n *yaml.Node, field, format string, args ...any) {
	d.errs = append(d.errs, &ConfigError{File: d.origin.file, Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.origin.lines[path] = n.Line
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // "key:" with nothing keeps the default
	}
	switch {
	case v.Type() == durationType:
		d.duration(n, v, path)
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path)
	case v.Kind() == reflect.Struct:
		d.mapping(n, v, path)
	case v.Kind() == reflect.Slice:
		d.sequence(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of keys, got %s", describe(n, false))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		idx, ok := fields[key.Value]
		if !ok || key.Kind != yaml.ScalarNode {
			d.errs = append(d.errs, &ConfigError{File: d.origin.file, Line: key.Line, Field: path,
				Msg: fmt.Sprintf("unknown key `%s` (known: %s)", key.Value, knownKeys(fields))})
			continue
		}
		if seen[key.Value] {
			d.errs = append(d.errs, &ConfigError{File: d.origin.file, Line: key.Line, Field: join(path, key.Value), Msg: "key given twice"})
			continue
		}
		seen[key.Value] = true
		d.value(val, v.Field(idx), join(path, key.Value))
		if val.Kind != yaml.ScalarNode {
			// A section's problems point at its key, not its first entry.
			d.origin.lines[join(path, key.Value)] = key.Line
		}
	}
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list, got %s", describe(n, v.Type().Elem() == secretType))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(out)
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want a duration like \"30s\", got %s", describe(n, false))
		return
	}
	dur, err := parseDuration(n.Value)
	if err != nil {
		d.fail(n, path, "%v", err)
		return
	}
	v.SetInt(int64(dur))
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	secret := v.Type() == secretType
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want a single value, got %s", describe(n, secret))
		return
	}
	shown := strconv.Quote(n.Value)
	if secret {
		shown = redacted
	}
	switch v.Kind() {
	case reflect.Bool:
		var b bool
		if err := n.Decode(&b); err != nil || n.Tag != "!!bool" {
			d.fail(n, path, "want true or false, got %s", shown)
			return
		}
		v.SetBool(b)
	case reflect.Int:
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil || n.Tag != "!!int" {
			d.fail(n, path, "want an integer, got %s", shown)
			return
		}
		v.SetInt(i)
	case reflect.String:
		// A secret may look like a number ("community: 123456"); anything
		// else must be a string so a typo like "port: [25]" is caught.
		if n.Tag != "!!str" && !(secret && (n.Tag == "!!int" || n.Tag == "!!float")) {
			d.fail(n, path, "want a string, got %s", shown)
			return
		}
		v.SetString(n.Value)
	default:
		d.fail(n, path, "unsupported setting type %s", v.Type())
	}
}

// parseDuration accepts Go durations plus a "d" (day) suffix.
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil {
			return 0, fmt.Errorf("want a duration like \"30s\", \"10m\" or \"7d\", got %q", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration like \"30s\", \"10m\" or \"7d\", got %q", s)
	}
	return dur, nil
}

func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

func knownKeys(fields map[string]int) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node, secret bool) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if secret {
			return redacted
		}
		return strconv.Quote(n.Value)
	case yaml.AliasNode:
		return "an unresolved alias"
	}
	return "nothing"
}
