package alert

import (
	"errors"
	"fmt"
	"os"
	"reflect"

	"github.com/selfprotect/selfprotect/strictyaml"
)

// ErrInvalid is matched (errors.Is) by every error saying the `alerts:`
// section itself is wrong, as opposed to the file being unreadable.
var ErrInvalid = errors.New("invalid alerts configuration")

// ConfigError names file, line and key:
// "selfprotect.yaml:41: alerts.notifiers[0].email.port: want an integer, got \"x\"".
type ConfigError = strictyaml.Error

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
// belong to the policy and are ignored here. name is for messages, and its
// directory is where a relative url_file is looked for.
func Parse(name string, data []byte) (*Config, error) {
	cfg := DefaultConfig()
	cfg.origin = strictyaml.NewOrigin(name, ErrInvalid)
	root, err := strictyaml.Document(name, data, ErrInvalid)
	if err != nil {
		return nil, err
	}
	if section := strictyaml.Section(root, Section); section != nil {
		// Secrets are never echoed, not even in a type error.
		d := &strictyaml.Decoder{Origin: cfg.origin, Secret: func(t reflect.Type) bool { return t == secretType }}
		d.Decode(section, reflect.ValueOf(cfg).Elem(), Section)
		if err := d.Err(); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

var secretType = reflect.TypeOf(Secret(""))
