package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"

	"github.com/selfprotect/selfprotect/policy"
)

// Where gen-docs puts each artefact under its output directory. The
// packaging scripts (packaging/build-deb.sh, make install) copy from these
// names, so they are part of the contract.
const (
	genManDir        = "man8"
	genCompletionDir = "completion"
	genBash          = "completion/selfprotect.bash"
	genZsh           = "completion/_selfprotect"
	genFish          = "completion/selfprotect.fish"
	genConfig        = "selfprotect.yaml"
)

// configHeader opens the default /etc/selfprotect/selfprotect.yaml. The
// policy below it is the built-in one, generated at build time, so the
// shipped file can never drift from the code.
const configHeader = `# selfprotect policy (/etc/selfprotect/selfprotect.yaml).
#
# This file is the built-in policy as "selfprotect check-config" prints it.
# Every key is optional: a key you delete keeps its built-in value. Check an
# edited file with
#     selfprotect check-config /etc/selfprotect/selfprotect.yaml
# and apply it with "systemctl reload selfprotect" (SIGHUP). A file that does
# not validate is refused and the running policy stays in force.
`

// manFiles ends selfprotect(8) with the files an administrator looks for;
// the markdown heading becomes the page's FILES section.
const manFiles = `

# FILES
**/etc/selfprotect/selfprotect.yaml**
	the policy and the alerts: section (check it with selfprotect check-config)

**/var/lib/selfprotect/**
	the SQLite store (events, cases, actions, what was isolated) and the lock

**/run/selfprotect/selfprotect.sock**
	the root-only control socket the other commands use

**/lib/systemd/system/selfprotect.service**
	the hardened systemd unit
`

// newGenDocsCommand writes the man pages, shell completions and default
// policy file that packaging ships. Hidden: it is a build step, not
// something an operator runs.
func newGenDocsCommand() *cobra.Command {
	var date string
	cmd := &cobra.Command{
		Use:    "gen-docs DIR",
		Short:  "Write man pages, shell completions and the default policy file into DIR (packaging)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var when *time.Time
			if date != "" {
				t, err := time.Parse(time.DateOnly, date)
				if err != nil {
					return fmt.Errorf("--date %q: want YYYY-MM-DD: %w", date, err)
				}
				when = &t
			}
			return genDocs(cmd.Root(), args[0], when)
		},
	}
	cmd.Flags().StringVar(&date, "date", "", "date in the man pages' footer, YYYY-MM-DD (default $SOURCE_DATE_EPOCH, else today)")
	return cmd
}

func genDocs(root *cobra.Command, dir string, date *time.Time) error {
	for _, sub := range []string{genManDir, genCompletionDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("gen-docs: %w", err)
		}
	}
	// Cobra adds its completion command only when Execute runs; add it here
	// too so its man pages exist however genDocs is called.
	root.InitDefaultCompletionCmd()
	// A Debian server has no PowerShell: no page for its completion.
	if c, _, err := root.Find([]string{"completion", "powershell"}); err == nil && c.Name() == "powershell" {
		c.Hidden = true
	}
	// The pages are dated by the build, not stamped with cobra's name.
	root.DisableAutoGenTag = true
	escapeAngles(root)
	root.Long += manFiles
	// Section 8: selfprotect is a system daemon and its CLI needs root.
	header := &doc.GenManHeader{
		Section: "8",
		Date:    date,
		Source:  "selfprotect " + version,
		Manual:  "System Administration",
	}
	if err := doc.GenManTree(root, header, filepath.Join(dir, genManDir)); err != nil {
		return fmt.Errorf("gen-docs: man pages: %w", err)
	}

	var bash, zsh, fish bytes.Buffer
	if err := root.GenBashCompletionV2(&bash, true); err != nil {
		return fmt.Errorf("gen-docs: bash completion: %w", err)
	}
	if err := root.GenZshCompletion(&zsh); err != nil {
		return fmt.Errorf("gen-docs: zsh completion: %w", err)
	}
	if err := root.GenFishCompletion(&fish, true); err != nil {
		return fmt.Errorf("gen-docs: fish completion: %w", err)
	}
	cfg, err := policy.Defaults().YAML()
	if err != nil {
		return fmt.Errorf("gen-docs: built-in policy: %w", err)
	}
	for name, body := range map[string][]byte{
		genBash:   bash.Bytes(),
		genZsh:    zsh.Bytes(),
		genFish:   fish.Bytes(),
		genConfig: append([]byte(configHeader), cfg...),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			return fmt.Errorf("gen-docs: %w", err)
		}
	}
	return nil
}

// escapeAngles protects "<name>" placeholders in help text from the man page
// renderer, which reads them as HTML tags and drops them. gen-docs exits
// after writing, so changing the live command tree is harmless.
func escapeAngles(c *cobra.Command) {
	esc := func(s string) string { return strings.ReplaceAll(s, "<", `\<`) }
	c.Short, c.Long = esc(c.Short), esc(c.Long)
	for _, fs := range []*pflag.FlagSet{c.LocalNonPersistentFlags(), c.PersistentFlags()} {
		fs.VisitAll(func(f *pflag.Flag) { f.Usage = esc(f.Usage) })
	}
	for _, sub := range c.Commands() {
		escapeAngles(sub)
	}
}
