package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/jsonout"
	"github.com/selfprotect/selfprotect/policy"
	"github.com/selfprotect/selfprotect/strictyaml"
)

func newLevelsCommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "levels [RESOURCE...]",
		Short: "Show how close resources are to tripping their rules (without RESOURCE: the closest ones per rule)",
		Long: `Show the rate engines' counts, as the running daemon holds them.

Without RESOURCE: per rule, the resources nearest to tripping (at most 5 a
rule, counting within the rule's window, no case open yet), and the
machine's storm rate. With RESOURCE (page:0xPFN, cpu:N, dimm:mcM/LABEL,
row:KEY, socket:N or machine): every rule's count for each, a case
already open included.`,
		Example: `  selfprotect levels
  selfprotect levels page:0x2d94 cpu:3`,
		RunE: func(cmd *cobra.Command, args []string) error {
			resources := []string{""}
			if len(args) > 0 {
				resources = args
				for _, a := range args {
					if _, err := fault.ParseResource(a); err != nil {
						return err
					}
				}
			}
			var levels []policy.Level
			for _, r := range resources {
				resp, err := daemon.Call(g.socket, daemon.Request{Command: "levels", Resource: r}, 2*time.Second)
				if err != nil {
					return exitError{exitNoDaemon, fmt.Sprintf("%v (is the daemon running? see `systemctl status selfprotect`)", err)}
				}
				levels = append(levels, resp.Levels...)
			}
			if asJSON {
				return jsonout.Write(g.out, jsonout.NewLevels(levels))
			}
			printLevels(g.out, levels, len(args) == 0)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (schema: doc/json.md)")
	return cmd
}

func printLevels(w io.Writer, levels []policy.Level, closest bool) {
	if len(levels) == 0 {
		// Only the closest list can be empty: a resource always has its
		// rules' levels, zero or not.
		fmt.Fprintln(w, "no resource is counting toward a rule (the storm rule is off)")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tRESOURCE\tLEVEL\tWINDOW\tSTATE")
	for _, l := range levels {
		window := "-"
		if l.Window > 0 {
			window = strictyaml.FormatDuration(l.Window)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", l.Rule, l.Resource, l.Count, l.Threshold, window, levelState(l))
	}
	tw.Flush()
	if closest {
		fmt.Fprintln(w, "(at most 5 resources a rule; a resource with an open case is not listed: `selfprotect faulty`)")
	}
}

func levelState(l policy.Level) string {
	tripsAt := l.Threshold
	if l.Rule == policy.RuleStorm {
		tripsAt++ // a storm is a rate above its limit
	}
	switch {
	case l.Tripped:
		return "case open"
	case l.Count == 0:
		return "quiet"
	case l.Count+1 >= tripsAt && strings.HasSuffix(l.Rule, "-pages"):
		return "one more page trips it"
	case l.Count+1 >= tripsAt:
		return "one more error trips it"
	}
	return "counting"
}
