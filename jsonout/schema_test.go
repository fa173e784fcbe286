package jsonout

import (
	"flag"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite doc/json-schema.json")

const schemaFile = "../doc/json-schema.json"

// The committed schema is what the output types say. A renamed, removed or
// added field, or a new enum value, changes it: the diff shows what readers
// of the JSON will see, and -update accepts it on purpose.
func TestSchemaPinned(t *testing.T) {
	got, err := Schema()
	require.NoError(t, err)
	if *update {
		require.NoError(t, os.WriteFile(schemaFile, got, 0o644))
	}
	want, err := os.ReadFile(schemaFile)
	require.NoError(t, err, "go test ./jsonout/ -update writes it")
	require.Equal(t, string(want), string(got), "%s is stale: go test ./jsonout/ -update (and say so in doc/json.md)", schemaFile)
	require.NotContains(t, string(got), "UNTAGGED:", "a field without a json tag would print its Go name")
	require.NotContains(t, string(got), "UNSUPPORTED:")
}

// The validator catches each way an output can drift from the schema.
func TestValidate(t *testing.T) {
	schema, err := Schema()
	require.NoError(t, err)
	good := `{"version":"1.0"}`
	require.NoError(t, Validate(schema, "version", []byte(good)))
	ev := func(over string) string {
		return `[{"time":"2026-03-01T10:00:00Z","source":"tracefs:mce_record","severity":"corrected","class":"memory",` +
			`"count":1,"cpu":1,"socket":0,"bank":7,"status":"0x9c","addr":"0x2d94040","mc":0,"dimm":"","row":"","summary":"x"` + over + `}]`
	}
	require.NoError(t, Validate(schema, "events", []byte(ev(""))))
	for _, tt := range []struct {
		name, command, output, want string
	}{
		{"extra field", "version", `{"version":"1","Version":"1"}`, `field "Version" is not in the schema`},
		{"missing field", "version", `{}`, `missing field "version"`},
		{"wrong type", "version", `{"version":1}`, "want a string"},
		{"severity as a number", "events", `[{"time":"2026-03-01T10:00:00Z","source":"tracefs:mce_record","severity":0}]`, "$[0]: missing field"},
		{"enum as a number", "events", ev(`,"severity":0`), "$[0].severity: want a string"},
		{"unknown enum value", "events", ev(`,"class":"disk"`), `"disk" is none of`},
		{"not RFC 3339", "events", ev(`,"time":"2026-03-01 10:00:00"`), "not an RFC 3339 time"},
		{"null list", "faulty", `null`, "want an array, got null"},
		{"unknown command", "frobnicate", `{}`, `no output for "frobnicate"`},
		{"not JSON", "version", `{`, "not JSON"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorContains(t, Validate(schema, tt.command, []byte(tt.output)), tt.want)
		})
	}
}
