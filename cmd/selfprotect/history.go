package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/jsonout"
	"github.com/selfprotect/selfprotect/store"
)

// The history commands read the store directly, so they work whether or not
// the daemon runs.

func (g *globals) openStore() (*store.Store, error) {
	st, err := store.OpenReadOnly(g.dbPath())
	if err != nil {
		return nil, fmt.Errorf("opening the store (is --state right?): %w", err)
	}
	return st, nil
}

func newFaultyCommand(g *globals) *cobra.Command {
	var asJSON, all bool
	cmd := &cobra.Command{
		Use:   "faulty",
		Short: "List cases and their suspects, FMA style (active cases; --all for every case)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			cases, err := st.Cases(store.CaseFilter{})
			if err != nil {
				return err
			}
			reports := []jsonout.Case{}
			for _, c := range cases {
				if !all && (c.State == fault.CaseRepaired || c.State == fault.CaseAcquit || c.State == fault.CaseClosed) {
					continue
				}
				acts, err := st.Actions(c.ID)
				if err != nil {
					return err
				}
				reports = append(reports, jsonout.NewCase(c, acts))
			}
			if asJSON {
				return jsonout.Write(g.out, reports)
			}
			tw := tabwriter.NewWriter(g.out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tCASE\tSTATE\tDIAGNOSIS\tSUSPECT\tFRU\tLAST ACTION")
			for _, r := range reports {
				last := "-"
				if n := len(r.Actions); n > 0 {
					last = fmt.Sprintf("%s %s", r.Actions[n-1].Kind, r.Actions[n-1].Outcome)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Opened.Format(time.DateTime), short(r.ID), r.State,
					r.Diagnosis, r.Suspect, r.FRU, last)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON with every action (schema: doc/json.md)")
	cmd.Flags().BoolVar(&all, "all", false, "include repaired, acquitted and closed cases")
	return cmd
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func newExplainCommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain CASE",
		Short: "Show the evidence and actions behind a case (a unique ID prefix of 8+ characters is enough)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			c, err := st.Case(args[0])
			if err != nil {
				return err
			}
			acts, err := st.Actions(c.ID)
			if err != nil {
				return err
			}
			if asJSON {
				hist, err := st.CaseHistory(c.ID)
				if err != nil {
					return err
				}
				return jsonout.Write(g.out, jsonout.NewExplain(c, acts, hist))
			}
			w := g.out
			fmt.Fprintf(w, "case %s  (%s)\n  opened    %s by rule %s\n  diagnosis %s\n  suspect   %s",
				c.ID, c.State, c.Opened.Format(time.RFC3339), c.Rule, c.Diagnosis, c.Suspect)
			if len(c.Also) > 0 {
				fmt.Fprintf(w, " (also %v)", c.Also)
			}
			fmt.Fprintf(w, "\n  FRU       %s\n  summary   %s\nevidence (%d):\n", c.FRU, c.Summary, len(c.Evidence))
			for _, e := range c.Evidence {
				fmt.Fprintf(w, "  %s  %s\n", e.Time.Format("15:04:05.000"), e.Summary)
			}
			if hist, err := st.CaseHistory(c.ID); err == nil && len(hist) > 0 {
				fmt.Fprintln(w, "history:")
				for _, h := range hist {
					fmt.Fprintf(w, "  %s  %s", h.At.Format(time.RFC3339), h.State)
					if h.Note != "" {
						fmt.Fprintf(w, ": %s", h.Note)
					}
					fmt.Fprintln(w)
				}
			}
			fmt.Fprintf(w, "actions (%d):\n", len(acts))
			for _, a := range acts {
				fmt.Fprintf(w, "  %s  %s %s: %s (%d attempts)", a.Time.Format("15:04:05.000"), a.Kind, a.Resource, a.Outcome, a.Attempts)
				if len(a.Violations) > 0 {
					fmt.Fprintf(w, " violates %s", strings.Join(a.Violations, ", "))
				}
				fmt.Fprintf(w, "\n      %s\n", a.Detail)
				if a.Undo != "" {
					fmt.Fprintf(w, "      undo: %s\n", a.Undo)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: the case, its actions and its history (schema: doc/json.md)")
	return cmd
}

func newEventsCommand(g *globals) *cobra.Command {
	var since time.Duration
	var limit int
	var class, resource string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the error history",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			q := store.EventQuery{Limit: limit, Class: class}
			if resource != "" {
				r, err := fault.ParseResource(resource)
				if err != nil {
					return err
				}
				q.Resource = r
			}
			if since > 0 {
				q.Since = time.Now().Add(-since)
			}
			evs, err := st.Events(q)
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]jsonout.Event, 0, len(evs))
				for _, e := range evs {
					out = append(out, jsonout.NewEvent(e))
				}
				return jsonout.Write(g.out, out)
			}
			for _, e := range evs {
				fmt.Fprintf(g.out, "%s  %s\n", e.Received.Format(time.RFC3339Nano), e.String())
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&since, "since", 0, "only events newer than this (e.g. 24h)")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many events")
	cmd.Flags().StringVar(&class, "class", "", "only this class (memory, cache, tlb, bus, pcie, other)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (schema: doc/json.md)")
	cmd.Flags().StringVar(&resource, "resource", "", "only events on this resource (page:0xPFN, dimm:mcM/LABEL, row:KEY, machine)")
	return cmd
}
