package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/alert/notifiers"
	"github.com/selfprotect/selfprotect/jsonout"
	"github.com/selfprotect/selfprotect/policy"
)

// errConfigInvalid ends a `check-config --json` whose file was refused:
// the JSON says why, the exit status says that it was.
var errConfigInvalid = errors.New("configuration invalid")

func newCheckConfigCommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check-config [FILE]",
		Short: "Validate a policy file (its alerts: section too) and print the effective settings (built-in defaults without FILE)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := ""
			if len(args) == 1 {
				file = args[0]
			}
			res, err := checkConfig(file)
			if asJSON {
				if werr := jsonout.Write(g.out, res); werr != nil {
					return werr
				}
				if err != nil {
					return fmt.Errorf("%w: %v", errConfigInvalid, err)
				}
				return nil
			}
			if err != nil {
				return err
			}
			if file != "" {
				for _, w := range res.Warnings {
					fmt.Fprintf(g.out, "# warning: %s\n", w)
				}
				fmt.Fprintf(g.out, "# %s is valid; effective policy:\n", file)
			} else {
				fmt.Fprintln(g.out, "# built-in policy:")
			}
			fmt.Fprint(g.out, res.Policy)
			if res.Alerts == "" {
				fmt.Fprintln(g.out, "# no alerts: notifiers configured")
				return nil
			}
			fmt.Fprintln(g.out, "# effective alerts: section (secrets shown as <secret>):")
			_, err = fmt.Fprint(g.out, res.Alerts)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (schema: doc/json.md); the exit status is 1 when the file is invalid")
	return cmd
}

// checkConfig validates file (the built-in policy when "") the way the
// daemon loads it and gives the effective settings; the error's problems
// are also in the result's Errors.
func checkConfig(file string) (jsonout.CheckConfig, error) {
	res := jsonout.CheckConfig{File: file, Errors: []jsonout.ConfigProblem{}, Warnings: []string{}}
	fail := func(err error) (jsonout.CheckConfig, error) {
		res.Errors = append(res.Errors, jsonout.ConfigProblems(file, err)...)
		return res, err
	}
	cfg := policy.Defaults()
	// Without a file there are no notifiers; saying so keeps the output
	// of a file holding the built-in policy identical.
	alerts := alert.DefaultConfig()
	if file != "" {
		var err error
		if cfg, err = policy.Load(file); err != nil {
			return fail(err)
		}
		if alerts, err = loadAlerts(file); err != nil {
			return fail(err)
		}
		// Valid but inert settings are worth a look before a reload.
		res.Warnings = append(res.Warnings, cfg.Warnings()...)
	}
	pol, err := cfg.YAML()
	if err != nil {
		return fail(err)
	}
	if len(alerts.Notifiers) > 0 {
		out, err := alerts.YAML()
		if err != nil {
			return fail(err)
		}
		res.Alerts = string(out)
	}
	res.Valid, res.Policy = true, string(pol)
	return res, nil
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
