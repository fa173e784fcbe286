package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/alert/notifiers"
	"github.com/selfprotect/selfprotect/jsonout"
)

func newAlertCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alert",
		Short: "Work with the alert notifiers of the alerts: section",
	}
	var path string
	var asJSON bool
	test := &cobra.Command{
		Use:   "test [NOTIFIER]",
		Short: "Send a test alert through every configured notifier (or one) and print each result",
		Long: `Sends a test alert straight through the notifiers configured in the alerts:
section of the configuration file, bypassing the daemon's outbox, and prints
what each one answered. It exits non-zero when any notifier failed.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := alert.Load(path)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				names := make([]string, 0, len(cfg.Notifiers))
				for _, n := range cfg.Notifiers {
					names = append(names, n.Name)
				}
				i := slices.Index(names, args[0])
				if i < 0 {
					return fmt.Errorf("no notifier %q in %s (configured: %s)", args[0], path, strings.Join(names, ", "))
				}
				cfg.Notifiers = cfg.Notifiers[i : i+1]
			}
			if len(cfg.Notifiers) == 0 {
				return fmt.Errorf("no notifiers configured in the alerts: section of %s", path)
			}
			ns, err := notifiers.Build(cfg)
			if err != nil {
				return err
			}
			return sendTestAlerts(cmd.Context(), g, ns, alert.TestAlert(cfg.HostName(), time.Now()), asJSON)
		},
	}
	test.Flags().StringVarP(&path, "config", "c", defaultPolicyPath, "configuration file with the alerts: section")
	test.Flags().BoolVar(&asJSON, "json", false, "print JSON (schema: doc/json.md)")
	show := &cobra.Command{
		Use:   "config",
		Short: "Validate the alerts: section and print it with defaults filled in (secrets as <secret>)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := alert.Load(path)
			if err != nil {
				return err
			}
			if asJSON {
				return jsonout.Write(g.out, jsonout.NewAlertConfig(path, cfg))
			}
			out, err := cfg.YAML()
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "# alerts: section of %s is valid; effective settings:\n", path)
			_, err = g.out.Write(out)
			return err
		},
	}
	show.Flags().StringVarP(&path, "config", "c", defaultPolicyPath, "configuration file with the alerts: section")
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON (schema: doc/json.md)")
	cmd.AddCommand(test, show)
	return cmd
}

var errAlertTestFailed = errors.New("some notifiers failed")

func sendTestAlerts(ctx context.Context, g *globals, ns []alert.NamedNotifier, a alert.Alert, asJSON bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	failed := 0
	report := jsonout.AlertTest{Notifiers: []jsonout.AlertResult{}}
	for _, n := range ns {
		nctx, cancel := context.WithTimeout(ctx, n.Timeout)
		start := time.Now()
		retry, err := n.Notifier.Notify(nctx, a)
		cancel()
		took := time.Since(start).Round(time.Millisecond)
		r := jsonout.AlertResult{Name: n.Name, Type: n.Type, OK: err == nil, Seconds: took.Seconds()}
		if err != nil {
			failed++
			r.Error, r.Retryable = err.Error(), retry
		}
		report.Notifiers = append(report.Notifiers, r)
		if asJSON {
			continue
		}
		if err != nil {
			hint := "retrying cannot help"
			if retry {
				hint = "the daemon would retry"
			}
			fmt.Fprintf(g.out, "%-16s %-13s FAILED after %s: %v (%s)\n", n.Name, n.Type, took, err, hint)
			continue
		}
		fmt.Fprintf(g.out, "%-16s %-13s ok (%s)\n", n.Name, n.Type, took)
	}
	if asJSON {
		if err := jsonout.Write(g.out, report); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d", errAlertTestFailed, failed, len(ns))
	}
	return nil
}
