package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/strictyaml"
)

// TestBadCorpus: every testdata/bad/X.yaml must fail with each line of
// X.err somewhere in the error, and the error must match ErrInvalid.
func TestBadCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 10)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".err")
			require.NoError(t, err, "every bad policy needs a .err file with the expected message")
			_, err = Load(f)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrInvalid)
			for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				require.Contains(t, err.Error(), line)
			}
		})
	}
}

func TestGoodCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f)
			require.NoError(t, err)
			require.NoError(t, cfg.Validate())
		})
	}
}

func TestGoodValues(t *testing.T) {
	defaults := Defaults()
	tests := []struct {
		file  string
		check func(t *testing.T, c *Config)
	}{
		{"empty.yaml", func(t *testing.T, c *Config) { requireSameSettings(t, defaults, c) }},
		{"comments_only.yaml", func(t *testing.T, c *Config) { requireSameSettings(t, defaults, c) }},
		{"full.yaml", func(t *testing.T, c *Config) { requireSameSettings(t, defaults, c) }},
		{"dry_run_only.yaml", func(t *testing.T, c *Config) {
			require.Equal(t, ModeDryRun, c.Mode)
			c.Mode = ModeEnforce
			requireSameSettings(t, defaults, c)
		}},
		{"tuned.yaml", func(t *testing.T, c *Config) {
			require.Equal(t, 50, c.Rules.Page.Threshold)
			require.Equal(t, 7*24*time.Hour, c.Rules.Page.Window)
			require.True(t, c.Rules.Page.Enabled, "keys not written keep their default")
			require.False(t, c.Rules.CPU.Enabled)
			require.Equal(t, 5, c.Rules.CPU.Threshold)
			require.False(t, c.Rules.Row.Enabled)
			require.Equal(t, 500.5, c.Rules.Storm.Rate)
			require.Equal(t, 10*time.Second, c.Rules.Storm.Over)
			require.Equal(t, 2*time.Minute, c.Rules.Storm.Quiet)
			require.Equal(t, time.Duration(0), c.Budgets.CPUOfflineInterval)
			require.Equal(t, 0, c.Budgets.MaxPagesPerDIMM)
			require.Equal(t, []int{0, 1, 17}, c.Deny.CPUs)
			require.Equal(t, []uint64{0x2d94, 12345, 0x10}, c.Deny.Pages)
			require.Equal(t, 36*time.Hour, c.EDAC.PollInterval)
			require.Equal(t, 100000, c.Engine.MaxTracked)
			require.Equal(t, 4, c.Engine.Evidence)
			require.True(t, c.DeniedPage(0x2d94))
			require.True(t, c.DeniedCPU(17))
		}},
		{"anchors.yaml", func(t *testing.T, c *Config) {
			require.Equal(t, 3, c.Rules.Page.Threshold)
			require.Equal(t, 3, c.Rules.CPU.Threshold)
			require.Equal(t, 24*time.Hour, c.Rules.CPU.Window)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata/good", tt.file))
			require.NoError(t, err)
			tt.check(t, cfg)
		})
	}
}

// requireSameSettings compares the settings, not where they were read from.
func requireSameSettings(t *testing.T, want, got *Config) {
	t.Helper()
	w, g := *want, *got
	w.origin, g.origin = strictyaml.Origin{}, strictyaml.Origin{}
	require.Equal(t, w, g)
}

func TestDefaultsAreValid(t *testing.T) {
	require.NoError(t, Defaults().Validate())
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NotErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), "nope.yaml")
}

// TestValidateInCode: a Config built in code has no file or lines, and the
// message still names the key.
func TestValidateInCode(t *testing.T) {
	c := Defaults()
	c.Rules.Page.Threshold = -3
	c.Deny.CPUs = []int{0, -2}
	err := c.Validate()
	require.ErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), "rules.page.threshold: must be >= 1, got -3")
	require.Contains(t, err.Error(), "deny.cpus[1]: must be a CPU number >= 0, got -2")
	var ce *ConfigError
	require.True(t, errors.As(err, &ce))
	require.Empty(t, ce.File)
}

// TestYAMLRoundTrip: check-config prints the effective policy; reading that
// output back must give the same policy.
func TestYAMLRoundTrip(t *testing.T) {
	for _, f := range []string{"full.yaml", "tuned.yaml", "anchors.yaml"} {
		t.Run(f, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata/good", f))
			require.NoError(t, err)
			out, err := cfg.YAML()
			require.NoError(t, err)
			back, err := Parse("effective.yaml", out)
			require.NoError(t, err, string(out))
			requireSameSettings(t, cfg, back)
		})
	}
	out, err := Defaults().YAML()
	require.NoError(t, err)
	require.Contains(t, string(out), "window: 24h # ")
	require.Contains(t, string(out), "cpus: [0] # CPUs never offlined")
	require.NotContains(t, string(out), "!!")
}

func TestReferenceDocumentsEveryKey(t *testing.T) {
	keys := Reference()
	byPath := map[string]Key{}
	for _, k := range keys {
		require.NotEmpty(t, k.Doc, "key %s has no doc tag", k.Path)
		byPath[k.Path] = k
	}
	require.Equal(t, "2", byPath["rules.page.threshold"].Default)
	require.Equal(t, "24h", byPath["rules.page.window"].Default)
	require.Equal(t, "[0]", byPath["deny.cpus"].Default)
	require.Equal(t, "0.75", byPath["budgets.min_online_cpu_fraction"].Default)
	require.Contains(t, byPath, "rules.storm")
}

// FuzzParse: the loader must never panic, and whatever it accepts must
// survive a round trip through YAML().
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("rules: &r {page: *r}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		out, err := cfg.YAML()
		require.NoError(t, err)
		back, err := Parse("again.yaml", out)
		require.NoError(t, err, string(out))
		requireSameSettings(t, cfg, back)
	})
}
