package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/jsonout"
)

// Exit codes of `status`, so monitoring can tell them apart.
const (
	exitNoDaemon = 1 // nothing answers on the socket
	exitNotArmed = 2 // the daemon answers but its sources are not armed yet
	exitDegraded = 3 // armed, but something leaves it partly blind
)

func newStatusCommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's state; exit 0 only when it answers with its sources armed and healthy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := daemon.Call(g.socket, daemon.Request{Command: "status"}, 2*time.Second)
			if err != nil {
				return exitError{exitNoDaemon, fmt.Sprintf("%v (is the daemon running? see `systemctl status selfprotect`)", err)}
			}
			s := resp.Status
			if asJSON {
				if err := jsonout.Write(g.out, jsonout.Status(*s)); err != nil {
					return err
				}
			} else {
				printStatus(g.out, s)
			}
			switch {
			case !s.Armed:
				return exitError{exitNotArmed, "daemon answers but no event source is armed: " + strings.Join(s.Problems, "; ")}
			case s.Degraded:
				return exitError{exitDegraded, "degraded: " + strings.Join(s.Problems, "; ")}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (schema: doc/json.md)")
	return cmd
}

func printStatus(w io.Writer, s *daemon.Status) {
	state := "armed"
	switch {
	case !s.Armed:
		state = "starting"
	case s.Degraded:
		state = "DEGRADED"
	}
	fmt.Fprintf(w, "selfprotect %s (pid %d, up %s): %s, mode %s", s.Version, s.PID, time.Since(s.Started).Round(time.Second), state, s.Mode)
	if s.Paused {
		fmt.Fprint(w, ", PAUSED (isolation stopped by operator)")
	}
	if s.Storming {
		fmt.Fprint(w, ", STORM in progress")
	}
	fmt.Fprintln(w)
	for _, p := range s.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
	if s.Metrics != "" {
		fmt.Fprintf(w, "metrics: %s\n", s.Metrics)
	}
	fmt.Fprintln(w, "sources:")
	for _, src := range s.Sources {
		fmt.Fprintf(w, "  %-10s %-11s %s\n", src.Name, src.State, src.Detail)
	}
	e := s.Events
	fmt.Fprintf(w, "events: %d received, %d counted (%d errors), %d memory errors merged (reported by a second path), %d EDAC counter errors credited, %d undecodable, %d trace records missed\n",
		e.Received, e.Counted, e.Errors, e.Merged, e.EDACCredited, e.Undecodable, e.TraceMissed)
	fmt.Fprintln(w, "counted from:")
	for _, p := range s.CountPaths {
		fmt.Fprintf(w, "  %-22s %s\n  %-22s   because %s\n", p.Class, p.From, "", p.Why)
	}
	fmt.Fprintf(w, "kernel: CEC %s\n        soft offline %s\n        EDAC %s\n", s.Kernel.CEC, s.Kernel.SoftOffline, s.Kernel.EDAC)
	b := s.Budgets
	fmt.Fprintf(w, "budgets: CPUs %d/%d online (offline by us %v, by others %v); pages retired %d of %d allowed (%d by us)\n",
		b.CPUsOnline, b.CPUsPresent, b.CPUsOfflineByUs, b.CPUsOfflineByOther, b.PagesRetired, b.PagesRetiredLimit, b.PagesRetiredByUs)
	open := s.CasesByState["open"] + s.CasesByState["isolated"] + s.CasesByState["failed"]
	fmt.Fprintf(w, "cases: %d active of %d; actions %v; %d pending, %d held while paused\n", open, s.CasesTotal, s.Actions, s.Pending, s.Held)
	if s.StoreFailures > 0 || s.HeldWrites > 0 {
		fmt.Fprintf(w, "store: %d failed writes since start, %d records held in memory until the store takes them\n", s.StoreFailures, s.HeldWrites)
	}
	printAlerts(w, s.Alerts)
}

func newPauseCommand(g *globals, verb string) *cobra.Command {
	short := "Stop isolating (errors are still counted and cases still opened)"
	if verb == "resume" {
		short = "Resume isolating, acting on cases diagnosed while paused"
	}
	return &cobra.Command{
		Use:   verb,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := daemon.Call(g.socket, daemon.Request{Command: verb}, 2*time.Second)
			if err != nil {
				return exitError{exitNoDaemon, err.Error()}
			}
			if resp.Status.Paused {
				fmt.Fprintln(g.out, "isolation paused")
			} else {
				fmt.Fprintln(g.out, "isolation active")
			}
			return nil
		},
	}
}

func newResolveCommand(g *globals, verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " CASE",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := daemon.Call(g.socket, daemon.Request{Command: verb, Case: args[0]}, 15*time.Second)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.out, resp.Message)
			return nil
		},
	}
}
