package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/policy"
)

// runGenDocs runs `selfprotect gen-docs DIR` through the real command tree.
func runGenDocs(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "docs")
	var out, errw bytes.Buffer
	root := newRootCommand(&out, &errw)
	root.SetArgs(append([]string{"gen-docs", dir}, args...))
	require.NoError(t, root.Execute(), errw.String())
	return dir
}

// Every command an operator can run has its page, and hidden build or test
// commands have none: the pages are generated from the tree, so a new
// subcommand cannot ship without one.
func TestGenDocsManPagePerCommand(t *testing.T) {
	dir := runGenDocs(t, "--date", "2026-03-04")
	entries, err := os.ReadDir(filepath.Join(dir, genManDir))
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}

	// A fresh tree, walked the way an operator sees it in --help.
	root := newRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
	root.InitDefaultCompletionCmd()
	var want []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() == "powershell" {
			return
		}
		want = append(want, strings.ReplaceAll(c.CommandPath(), " ", "-")+".8")
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				walk(sub)
			}
		}
	}
	walk(root)
	sort.Strings(want)
	require.Equal(t, want, got)
	for _, name := range []string{"run", "status", "faulty", "check-config", "repair"} {
		require.Contains(t, got, "selfprotect-"+name+".8")
	}
	for _, hidden := range []string{"selfprotect-sim.8", "selfprotect-gen-docs.8", "selfprotect-help.8", "selfprotect-completion-powershell.8"} {
		require.NotContains(t, got, hidden)
	}

	page, err := os.ReadFile(filepath.Join(dir, genManDir, "selfprotect-run.8"))
	require.NoError(t, err)
	text := string(page)
	require.Contains(t, text, `.TH "SELFPROTECT-RUN" "8" "Mar 2026" "selfprotect `)
	require.Contains(t, text, `\fB--metrics-listen\fP`, "run's own flags are documented")
	require.NotContains(t, text, "Auto generated")

	// "<debugfs>" survives the markdown step instead of vanishing as a tag.
	page, err = os.ReadFile(filepath.Join(dir, genManDir, "selfprotect.8"))
	require.NoError(t, err)
	require.Contains(t, string(page), "<debugfs>/tracing")
	require.Contains(t, string(page), ".SH FILES\n", "selfprotect(8) lists its files")
	require.Contains(t, string(page), "/var/lib/selfprotect/")
}

// The shipped /etc/selfprotect/selfprotect.yaml is the built-in policy, and
// it loads back to exactly that.
func TestGenDocsDefaultConfigIsBuiltInPolicy(t *testing.T) {
	dir := runGenDocs(t)
	path := filepath.Join(dir, genConfig)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(raw), configHeader))

	loaded, err := policy.Load(path)
	require.NoError(t, err)
	got, err := loaded.YAML()
	require.NoError(t, err)
	want, err := policy.Defaults().YAML()
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))
	require.Equal(t, configHeader+string(want), string(raw))
}

func TestGenDocsCompletions(t *testing.T) {
	dir := runGenDocs(t)
	for name, marker := range map[string]string{
		genBash: "complete -o default -F __start_selfprotect selfprotect",
		genZsh:  "#compdef selfprotect",
		genFish: "complete -c selfprotect",
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		require.Contains(t, string(b), marker, name)
	}
}

func TestGenDocsBadDate(t *testing.T) {
	var out, errw bytes.Buffer
	root := newRootCommand(&out, &errw)
	root.SetArgs([]string{"gen-docs", t.TempDir(), "--date", "01/02/2026"})
	err := root.Execute()
	require.ErrorContains(t, err, `--date "01/02/2026"`)
}
