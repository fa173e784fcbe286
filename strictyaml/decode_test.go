package strictyaml

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var errTest = errors.New("invalid test config")

type token string

type inner struct {
	Port  int           `yaml:"port"`
	Wait  time.Duration `yaml:"wait"`
	Token token         `yaml:"token"`
	Names []string      `yaml:"names"`
}

type testConfig struct {
	Enabled bool    `yaml:"enabled"`
	Rate    float64 `yaml:"rate"`
	PFN     uint64  `yaml:"pfn"`
	Inner   inner   `yaml:"inner"`
	Opt     *inner  `yaml:"opt"`
}

func decode(t *testing.T, doc string) (testConfig, Origin, error) {
	t.Helper()
	cfg := testConfig{Rate: 1.5, Inner: inner{Port: 25}}
	root, err := Document("c.yaml", []byte(doc), errTest)
	if err != nil {
		return cfg, Origin{}, err
	}
	o := NewOrigin("c.yaml", errTest)
	if root == nil {
		return cfg, o, nil
	}
	d := &Decoder{Origin: o,
		Skip:   func(path, key string) bool { return path == "" && key == "elsewhere" },
		Secret: func(t reflect.Type) bool { return t == reflect.TypeOf(token("")) }}
	d.Decode(root, reflect.ValueOf(&cfg).Elem(), "")
	return cfg, o, d.Err()
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string // each must appear; every error must match errTest
	}{
		{"unknown top", "enabeld: true\n", []string{"c.yaml:1: unknown key `enabeld` at top level (known: enabled, inner, opt, pfn, rate)"}},
		{"unknown nested", "inner:\n  prot: 1\n", []string{"c.yaml:2: unknown key `prot` in inner (known: names, port, token, wait)"}},
		{"repeated", "rate: 1\nrate: 2\n", []string{"c.yaml:2: rate: key given twice"}},
		{"wrong types, all at once", "enabled: yes please\ninner:\n  port: x\n  wait: 5 minutes\n  names: a\n",
			[]string{"c.yaml:1: enabled: want true or false", "c.yaml:3: inner.port: want an integer, got \"x\"",
				"c.yaml:4: inner.wait: invalid duration \"5 minutes\"", "c.yaml:5: inner.names: want a list, got \"a\""}},
		{"secret never echoed", "inner:\n  token: true\nopt:\n  token: {hunter2: x}\n", []string{"c.yaml:2: inner.token: want a string, got <secret>", "c.yaml:4: opt.token: want a single value, got a mapping"}},
		{"syntax error line", "inner:\n  port: 1\n wait: 2s\n", []string{"c.yaml:3: YAML syntax:"}},
		{"two documents", "rate: 1\n---\nrate: 2\n", []string{"c.yaml:2: only one YAML document is allowed"}},
		{"mapping expected", "inner: 5\n", []string{"c.yaml:1: inner: want a mapping of keys, got \"5\""}},
		{"negative uint", "pfn: -1\n", []string{"c.yaml:1: pfn: want a non-negative integer"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decode(t, tc.doc)
			require.Error(t, err)
			require.ErrorIs(t, err, errTest)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestDecodeValues(t *testing.T) {
	cfg, o, err := decode(t, "elsewhere: {anything: [goes]}\nenabled: true\npfn: 0x2d94\nopt:\n  port: 587\n  token: 123456\ninner:\n  wait: 1d12h\n  names: [a, b]\n")
	require.NoError(t, err)
	require.True(t, cfg.Enabled)
	require.Equal(t, 1.5, cfg.Rate, "a key left out keeps its default")
	require.Equal(t, uint64(0x2d94), cfg.PFN)
	require.Equal(t, 25, cfg.Inner.Port)
	require.Equal(t, 36*time.Hour, cfg.Inner.Wait)
	require.Equal(t, []string{"a", "b"}, cfg.Inner.Names)
	require.NotNil(t, cfg.Opt)
	require.Equal(t, 587, cfg.Opt.Port)
	require.Equal(t, token("123456"), cfg.Opt.Token, "a numeric-looking secret is taken as text")

	// Lines point at keys; a key left out points at its nearest parent.
	require.Equal(t, 7, o.Line("inner"))
	require.Equal(t, 8, o.Line("inner.wait"))
	require.Equal(t, 7, o.Line("inner.port"))
	e := o.Errorf("inner.port", "must be < %d", 10)
	require.Equal(t, "c.yaml:7: inner.port: must be < 10", e.Error())
	require.ErrorIs(t, e, errTest)
}

func TestEmptyDocument(t *testing.T) {
	for _, doc := range []string{"", "# only a comment\n"} {
		root, err := Document("c.yaml", []byte(doc), errTest)
		require.NoError(t, err)
		require.Nil(t, root)
	}
	require.Nil(t, Section(nil, "x"))
}
