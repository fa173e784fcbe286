package alert

import "encoding/json"

// Secret holds a password, key or token. Every way of printing it (fmt,
// YAML, JSON) shows "<secret>": the config is echoed by check-config and
// status, and values end up in logs and errors.
type Secret string

const redacted = "<secret>"

// Reveal is the one way to read the value, for the code that sends it.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string   { return mask(s) }
func (s Secret) GoString() string { return `alert.Secret("` + mask(s) + `")` }

// MarshalYAML and MarshalJSON keep an empty secret visibly empty, so
// `check-config` still shows that none was set.
func (s Secret) MarshalYAML() (any, error)    { return mask(s), nil }
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(mask(s)) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(mask(s)), nil }

func mask(s Secret) string {
	if s == "" {
		return ""
	}
	return redacted
}
