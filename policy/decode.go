package policy

import (
	"fmt"
	"reflect"

	"github.com/selfprotect/selfprotect/strictyaml"
)

// MaxPolicyBytes bounds a policy file: a real one is a few kilobytes, and
// a reload must never stall the daemon reading something huge.
const MaxPolicyBytes = 1 << 20

// Load reads and validates a policy file. Errors name path:line and the key.
func Load(path string) (*Config, error) {
	data, err := strictyaml.ReadConfigFile(path, MaxPolicyBytes)
	if err != nil {
		return nil, fmt.Errorf("reading policy %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse decodes a policy over the defaults and validates it. name is used
// in error messages only. Missing keys keep their default; unknown keys,
// wrong types, bad durations and impossible values are errors, all of them
// reported at once.
func Parse(name string, data []byte) (*Config, error) {
	cfg := Defaults()
	cfg.origin = strictyaml.NewOrigin(name, ErrInvalid)

	root, err := strictyaml.Document(name, data, ErrInvalid)
	if err != nil {
		return nil, err
	}
	if root != nil {
		d := &strictyaml.Decoder{Origin: cfg.origin, Skip: func(path, key string) bool {
			return path == "" && key == AlertsKey // alert/ reads and validates its own section
		}}
		d.Decode(root, reflect.ValueOf(cfg).Elem(), "")
		if err := d.Err(); err != nil {
			return nil, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// AlertsKey is the top-level section the alert package owns in the same
// file; the policy lets it through unread.
const AlertsKey = "alerts"
