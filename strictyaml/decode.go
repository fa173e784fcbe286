package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Document parses data as a single YAML document and returns its content
// node, nil for an empty file (or one holding only comments). Syntax
// errors name file:line and match kind.
func Document(name string, data []byte, kind error) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(name, err, kind)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: name, Line: extra.Line, Msg: "only one YAML document is allowed", Kind: kind}
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxError(name, err, kind)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// Section is the value of the top-level key in root, nil when root is not
// a mapping or has no such key.
func Section(root *yaml.Node, key string) *yaml.Node {
	if root == nil || root.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == key {
			return root.Content[i+1]
		}
	}
	return nil
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
func syntaxError(name string, err error, kind error) error {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: name, Msg: "YAML syntax: " + err.Error(), Kind: kind}
	}
	line, _ := strconv.Atoi(m[1]) // 0 when yaml gave no line
	if slices.Contains(parserProblems, m[2]) {
		line++
	}
	return &Error{File: name, Line: line, Msg: "YAML syntax: " + m[2], Kind: kind}
}

// Decoder walks a YAML tree alongside a struct (fields named by their
// `yaml` tags) and records where each key path was written in Origin.
// Doing the walk ourselves, rather than yaml's KnownFields, lets every
// error name the key path a user wrote instead of a Go type name.
type Decoder struct {
	Origin Origin
	// Skip, when set, says the key at the mapping path belongs to another
	// reader of the same file and is left alone ("alerts" at the top of
	// the policy).
	Skip func(path, key string) bool
	// Secret, when set, says values of type t must never be echoed in an
	// error; they show as Redacted, and may be written as numbers.
	Secret func(t reflect.Type) bool

	errs []error
}

// Redacted stands for a secret's value in messages.
const Redacted = "<secret>"

// Err joins every problem found so far, nil when there was none.
func (d *Decoder) Err() error { return errors.Join(d.errs...) }

var durationType = reflect.TypeOf(time.Duration(0))

func (d *Decoder) fail(line int, field, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.Origin.File, Line: line, Field: field, Msg: fmt.Sprintf(format, args...), Kind: d.Origin.Kind})
}

func (d *Decoder) secret(t reflect.Type) bool { return d.Secret != nil && d.Secret(t) }

// Decode sets v (a settable value: reflect.ValueOf(&cfg).Elem()) from n,
// the node written at path. Keys left out keep v's values.
func (d *Decoder) Decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.Origin.Lines[path] = n.Line
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
		d.Decode(n, v.Elem(), path)
	case v.Kind() == reflect.Struct:
		d.mapping(n, v, path)
	case v.Kind() == reflect.Slice:
		d.sequence(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

func (d *Decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "want a mapping of keys, got %s", describe(n, false))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if d.Skip != nil && key.Kind == yaml.ScalarNode && d.Skip(path, key.Value) {
			continue
		}
		idx, ok := fields[key.Value]
		if !ok || key.Kind != yaml.ScalarNode {
			where := "at top level"
			if path != "" {
				where = "in " + path
			}
			d.fail(key.Line, "", "unknown key `%s` %s (known: %s)", key.Value, where, knownKeys(fields))
			continue
		}
		if seen[key.Value] {
			d.fail(key.Line, join(path, key.Value), "key given twice")
			continue
		}
		seen[key.Value] = true
		d.Decode(val, v.Field(idx), join(path, key.Value))
		if val.Kind != yaml.ScalarNode {
			// A section's problems point at its key, not its first entry.
			d.Origin.Lines[join(path, key.Value)] = key.Line
		}
	}
}

func (d *Decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n.Line, path, "want a list, got %s", describe(n, d.secret(v.Type().Elem())))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.Decode(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(out)
}

func (d *Decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n.Line, path, "want a duration like \"24h\", got %s", describe(n, false))
		return
	}
	dur, err := ParseDuration(n.Value)
	if err != nil {
		d.fail(n.Line, path, "%v", err)
		return
	}
	v.SetInt(int64(dur))
}

func (d *Decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	secret := d.secret(v.Type())
	if n.Kind != yaml.ScalarNode {
		d.fail(n.Line, path, "want a single value, got %s", describe(n, secret))
		return
	}
	s := n.Value
	shown := strconv.Quote(s)
	if secret {
		shown = Redacted
	}
	switch v.Kind() {
	case reflect.Bool:
		var b bool
		if err := n.Decode(&b); err != nil || n.Tag != "!!bool" {
			d.fail(n.Line, path, "want true or false, got %s", shown)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
		if err != nil || n.Tag != "!!int" {
			d.fail(n.Line, path, "want an integer, got %s", shown)
			return
		}
		v.SetInt(i)
	case reflect.Uint64:
		u, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, 64)
		if err != nil || (n.Tag != "!!int" && n.Tag != "!!str") {
			d.fail(n.Line, path, "want a non-negative integer (hex like 0x2d94 or decimal), got %s", shown)
			return
		}
		v.SetUint(u)
	case reflect.Float64:
		var f float64
		if err := n.Decode(&f); err != nil || (n.Tag != "!!float" && n.Tag != "!!int") {
			d.fail(n.Line, path, "want a number, got %s", shown)
			return
		}
		v.SetFloat(f)
	case reflect.String:
		// A secret may look like a number ("community: 123456"); anything
		// else must be a string so a typo like "host: [a]" is caught.
		if n.Tag != "!!str" && !(secret && (n.Tag == "!!int" || n.Tag == "!!float")) {
			d.fail(n.Line, path, "want a string, got %s", shown)
			return
		}
		v.SetString(s)
	default:
		d.fail(n.Line, path, "unsupported setting type %s", v.Type())
	}
}

// yamlFields maps yaml key names to struct field indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if name := FieldName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

// FieldName is the key a struct field is written under, "" for none.
func FieldName(f reflect.StructField) string {
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

func describe(n *yaml.Node, secret bool) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if secret {
			return Redacted
		}
		return strconv.Quote(n.Value)
	case yaml.AliasNode:
		return "an unresolved alias"
	}
	return "nothing"
}
