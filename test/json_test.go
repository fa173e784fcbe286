package test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/jsonout"
)

// The real daemon's --json outputs match the published schema
// (doc/json-schema.json): status while it runs, and the history commands
// on the store it wrote.
func TestJSONOutputsMatchSchema(t *testing.T) {
	t.Parallel()
	m := newMachine(t, intel612)
	d := startDaemon(t, m, daemonOpts{})
	require.NoError(t, m.InjectMemoryCE(0x2d94040, 2, 1))
	require.NoError(t, m.InjectCacheCE(3, 1))
	d.settle(500 * time.Millisecond)
	cases := d.faulty() // validated inside
	require.Len(t, cases, 1)
	schema := jsonSchema(t)
	for _, tt := range []struct {
		command string
		args    []string
	}{
		{"status", []string{"status", "--json"}},
		{"events", []string{"events", "--json"}},
		{"explain", []string{"explain", cases[0].ID, "--json"}},
		{"version", []string{"version", "--json"}},
	} {
		out, code := d.cli(tt.args...)
		require.Equal(t, 0, code, out)
		require.NoError(t, jsonout.Validate(schema, tt.command, []byte(out)), "%s:\n%s", tt.command, out)
	}
}
