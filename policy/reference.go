package policy

import (
	"bytes"
	"fmt"
	"github.com/selfprotect/selfprotect/strictyaml"
	"reflect"
	"strconv"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Key documents one policy setting for the configuration reference.
type Key struct {
	Path    string // dotted, e.g. "rules.page.threshold"
	Default string // as it would be written in YAML
	Doc     string
}

// Reference lists every key (sections first, then their settings) with its
// built-in default and documentation, in file order.
func Reference() []Key {
	var keys []Key
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := strictyaml.FieldName(f)
			if name == "" {
				continue
			}
			p := join(path, name)
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct && fv.Type() != durationType {
				keys = append(keys, Key{Path: p, Doc: f.Tag.Get("doc")})
				walk(fv, p)
				continue
			}
			keys = append(keys, Key{Path: p, Default: scalarText(fv, f.Tag.Get("fmt")), Doc: f.Tag.Get("doc")})
		}
	}
	walk(reflect.ValueOf(Defaults()).Elem(), "")
	return keys
}

// YAML renders the effective policy with each key's documentation as a
// comment; Parse of the output yields the same Config.
func (c *Config) YAML() ([]byte, error) {
	root := structNode(reflect.ValueOf(c).Elem())
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("rendering policy: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("rendering policy: %w", err)
	}
	return buf.Bytes(), nil
}

func structNode(v reflect.Value) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strictyaml.FieldName(f)
		if name == "" {
			continue
		}
		key := &yaml.Node{Kind: yaml.ScalarNode, Value: name, Tag: "!!str"}
		fv := v.Field(i)
		var val *yaml.Node
		switch {
		case fv.Kind() == reflect.Struct && fv.Type() != durationType:
			key.HeadComment = f.Tag.Get("doc")
			val = structNode(fv)
		case fv.Kind() == reflect.Slice:
			// yaml places a flow list's comment right only on the list itself.
			val = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle, LineComment: f.Tag.Get("doc")}
			for j := 0; j < fv.Len(); j++ {
				val.Content = append(val.Content, scalarNode(fv.Index(j), f.Tag.Get("fmt")))
			}
		default:
			key.LineComment = f.Tag.Get("doc")
			val = scalarNode(fv, f.Tag.Get("fmt"))
		}
		n.Content = append(n.Content, key, val)
	}
	return n
}

func scalarNode(v reflect.Value, format string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: scalarText(v, format)}
	// Numbers and booleans stay untagged: "rate: 2000" reads back as a
	// float anyway, and an explicit !!float would only confuse readers.
	if v.Type() == durationType || v.Kind() == reflect.String {
		n.Tag = "!!str"
	}
	return n
}

func scalarText(v reflect.Value, format string) string {
	if v.Type() == durationType {
		return formatDuration(time.Duration(v.Int()))
	}
	switch v.Kind() {
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint64:
		if format == "hex" {
			return fmt.Sprintf("%#x", v.Uint())
		}
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.String:
		return v.String()
	case reflect.Slice:
		s := "["
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				s += ", "
			}
			s += scalarText(v.Index(i), format)
		}
		return s + "]"
	}
	return fmt.Sprint(v.Interface())
}

var durationType = reflect.TypeOf(time.Duration(0))

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
