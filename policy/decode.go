package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// MaxPolicyBytes bounds a policy file: a real one is a few kilobytes, and
// a reload must never stall the daemon reading something huge.
const MaxPolicyBytes = 1 << 20

// Load reads and validates a policy file. Errors name path:line and the key.
func Load(path string) (*Config, error) {
	data, err := readPolicyFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy %s: %w", path, err)
	}
	return Parse(path, data)
}

// readPolicyFile reads a regular file of at most MaxPolicyBytes. The open
// does not block: a FIFO (or a device) in the policy's place must fail at
// once, not hang a SIGHUP reload until someone writes to it.
func readPolicyFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicyBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxPolicyBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxPolicyBytes)
	}
	return data, nil
}

// Parse decodes a policy over the defaults and validates it. name is used
// in error messages only. Missing keys keep their default; unknown keys,
// wrong types, bad durations and impossible values are errors, all of them
// reported at once.
func Parse(name string, data []byte) (*Config, error) {
	cfg := Defaults()
	cfg.origin = origin{file: name, lines: map[string]int{}}

	root, err := parseDocument(name, data)
	if err != nil {
		return nil, err
	}
	if root != nil {
		d := &decoder{origin: cfg.origin}
		d.value(root, reflect.ValueOf(cfg).Elem(), "")
		if len(d.errs) > 0 {
			return nil, errors.Join(d.errs...)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseDocument returns the single document's content node, nil for an
// empty file (or one holding only comments).
func parseDocument(name string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &ConfigError{File: name, Line: extra.Line, Msg: "only one YAML document is allowed"}
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxError(name, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// parserProblems are the messages of yaml's parser (as opposed to its
// scanner). yaml reports their line 0-based while scanner errors are
// 1-based, so the parser's need one added to point at the right line.
var parserProblems = []string{
	"did not find expected ',' or ']'", "did not find expected ',' or '}'",
	"did not find expected '-' indicator", "did not find expected <document start>",
	"did not find expected <stream-start>", "did not find expected key",
	"did not find expected node content", "found duplicate %TAG directive",
	"found duplicate %YAML directive", "found incompatible YAML document",
	"found undefined tag handle",
}

// syntaxError turns "yaml: line 3: did not find expected key" into
// "policy.yaml:4: YAML syntax: did not find expected key".
func syntaxError(name string, err error) error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return &ConfigError{File: name, Msg: "YAML syntax: " + err.Error()}
	}
	line, _ := strconv.Atoi(m[1]) // 0 when yaml gave no line
	if slices.Contains(parserProblems, m[2]) {
		line++
	}
	return &ConfigError{File: name, Line: line, Msg: "YAML syntax: " + m[2]}
}

// AlertsKey is the top-level section the alert package owns in the same
// file; the policy lets it through unread.
const AlertsKey = "alerts"

// decoder walks the YAML tree alongside the Config struct. Doing the walk
// ourselves (rather than yaml's KnownFields) lets every error name the key
// path a user wrote ("rules.page") instead of a Go type name.
type decoder struct {
	origin origin
	errs   []error
}

var durationType = reflect.TypeOf(time.Duration(0))

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
		d.fail(n, path, "want a mapping of keys, got %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if path == "" && key.Value == AlertsKey {
			continue // alert/ reads and validates its own section
		}
		idx, ok := fields[key.Value]
		if !ok || key.Kind != yaml.ScalarNode {
			where := "at top level"
			if path != "" {
				where = "in " + path
			}
			d.errs = append(d.errs, &ConfigError{File: d.origin.file, Line: key.Line,
				Msg: fmt.Sprintf("field `%s` not found %s (known: %s)", key.Value, where, knownKeys(fields))})
			continue
		}
		d.value(val, v.Field(idx), join(path, key.Value))
	}
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list, got %s", describe(n))
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
		d.fail(n, path, "want a duration like \"24h\", got %s", describe(n))
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
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want a single value, got %s", describe(n))
		return
	}
	s := n.Value
	switch v.Kind() {
	case reflect.Bool:
		var b bool
		if err := n.Decode(&b); err != nil || n.Tag != "!!bool" {
			d.fail(n, path, "want true or false, got %q", s)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
		if err != nil || n.Tag != "!!int" {
			d.fail(n, path, "want an integer, got %q", s)
			return
		}
		v.SetInt(i)
	case reflect.Uint64:
		u, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, 64)
		if err != nil || (n.Tag != "!!int" && n.Tag != "!!str") {
			d.fail(n, path, "want a non-negative integer (hex like 0x2d94 or decimal), got %q", s)
			return
		}
		v.SetUint(u)
	case reflect.Float64:
		var f float64
		if err := n.Decode(&f); err != nil || (n.Tag != "!!float" && n.Tag != "!!int") {
			d.fail(n, path, "want a number, got %q", s)
			return
		}
		v.SetFloat(f)
	case reflect.String:
		if n.Tag != "!!str" {
			d.fail(n, path, "want a string, got %q", s)
			return
		}
		v.SetString(s)
	default:
		d.fail(n, path, "unsupported setting type %s", v.Type())
	}
}

// yamlFields maps yaml key names to struct field indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
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

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	case yaml.AliasNode:
		return "an unresolved alias"
	}
	return "nothing"
}
