package alert

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: any input gives a config or a ConfigError (never a panic),
// and a config's rendering parses back with the same notifiers.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/conf.*.yml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("alerts: [1, 2]\n"))
	f.Add([]byte("alerts:\n  outbox: {max_backoff: 1d, initial_backoff: 0.5d}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yml", data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is not a ConfigError: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		out, err := cfg.YAML()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse("rendered.yml", out)
		if err != nil {
			t.Fatalf("rendering does not parse back: %v\n%s", err, out)
		}
		if len(again.Notifiers) != len(cfg.Notifiers) {
			t.Fatalf("%d notifiers became %d", len(cfg.Notifiers), len(again.Notifiers))
		}
	})
}
