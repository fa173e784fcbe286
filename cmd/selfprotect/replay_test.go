package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	root := newRootCommand(&out, &errw)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errw.String(), err
}

// TestReplayCLI generates a small fleet, replays it with our policy and the
// anchors, and checks the report names every policy and every row; then a
// policy file with another page threshold changes the pages retired.
func TestReplayCLI(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "fleet.jsonl")
	_, stderr, err := runCLI(t, "replay", "gen", "--hosts", "200", "--seed", "3", "--out", trace)
	require.NoError(t, err)
	require.Contains(t, stderr, "for 200 hosts")

	page := filepath.Join(dir, "report.html")
	out, _, err := runCLI(t, "replay", "--trace", trace, "--grouped", "--compare", "builtin:anchors", "--html", page)
	require.NoError(t, err)
	html, err := os.ReadFile(page)
	require.NoError(t, err)
	require.Contains(t, string(html), `<svg class="plot" id="tradeoff"`)
	for _, want := range []string{"replayed ", "selfprotect", "rasdaemon", "mcelog", "cec-2", "fma",
		"pages retired", "memory retired", "DIMM cases", "UE pages", "protected before UE"} {
		require.Contains(t, out, want)
	}

	strict := filepath.Join(dir, "strict.yaml")
	require.NoError(t, os.WriteFile(strict, []byte("rules:\n  page:\n    threshold: 200\n"), 0o600))
	a, _, err := runCLI(t, "replay", "--trace", trace)
	require.NoError(t, err)
	b, _, err := runCLI(t, "replay", "--trace", trace, "--policy", strict)
	require.NoError(t, err)
	require.NotEqual(t, retiredRow(t, a), retiredRow(t, b))

	_, _, err = runCLI(t, "replay", "--trace", trace, "--compare", "builtin:nope")
	require.ErrorContains(t, err, `unknown built-in policy "builtin:nope"`)
	_, _, err = runCLI(t, "replay")
	require.ErrorContains(t, err, "--trace, --store, --rasdaemon or --mcelog is required")
	// An mcelog log, named after its file, beside a trace.
	out, _, err = runCLI(t, "replay", "--mcelog", "../../replay/testdata/mcelog.log", "--compare", "builtin:mcelog")
	require.NoError(t, err)
	require.Contains(t, out, "replayed 3 events from 1 hosts")

	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte("# a comment\n{\"host\":\"x\",\"ram_mib\":0,\"cpus\":2}\n"), 0o600))
	_, _, err = runCLI(t, "replay", "--trace", bad)
	require.ErrorContains(t, err, `bad.jsonl:2: field "ram_mib": must be >= 1, got 0`)
}

func retiredRow(t *testing.T, report string) string {
	t.Helper()
	for _, line := range strings.Split(report, "\n") {
		if strings.Contains(line, "pages retired") {
			return line
		}
	}
	t.Fatalf("no pages retired row in\n%s", report)
	return ""
}
