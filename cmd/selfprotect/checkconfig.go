package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/alert/notifiers"
	"github.com/selfprotect/selfprotect/policy"
)

func newCheckConfigCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "check-config [FILE]",
		Short: "Validate a policy file (its alerts: section too) and print the effective settings (built-in defaults without FILE)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := policy.Defaults()
			var alerts *alert.Config
			if len(args) == 1 {
				var err error
				if cfg, err = policy.Load(args[0]); err != nil {
					return err
				}
				if alerts, err = loadAlerts(args[0]); err != nil {
					return err
				}
			}
			out, err := cfg.YAML()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				// Valid but inert settings are worth a look before a reload.
				for _, w := range cfg.Warnings() {
					fmt.Fprintf(g.out, "# warning: %s\n", w)
				}
				fmt.Fprintf(g.out, "# %s is valid; effective policy:\n", args[0])
			} else {
				fmt.Fprintln(g.out, "# built-in policy:")
			}
			if _, err := g.out.Write(out); err != nil {
				return err
			}
			if alerts != nil {
				return printAlertsConfig(g, alerts)
			}
			return nil
		},
	}
}

// loadAlerts validates the file's alerts: section the way the daemon
// loads it: the notifiers are built, so a missing hook or CA file shows.
func loadAlerts(path string) (*alert.Config, error) {
	cfg, err := alert.Load(path)
	if err != nil {
		return nil, err
	}
	if _, err := notifiers.Build(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// printAlertsConfig prints the effective section, secrets as <secret>.
func printAlertsConfig(g *globals, cfg *alert.Config) error {
	if len(cfg.Notifiers) == 0 {
		fmt.Fprintln(g.out, "# no alerts: notifiers configured")
		return nil
	}
	out, err := cfg.YAML()
	if err != nil {
		return err
	}
	fmt.Fprintln(g.out, "# effective alerts: section (secrets shown as <secret>):")
	_, err = g.out.Write(out)
	return err
}
