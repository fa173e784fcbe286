package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/jsonout"
	"github.com/selfprotect/selfprotect/kpath"
)

// globals are the flags every subcommand shares: where the kernel's
// filesystems are, where our state lives and how to log.
type globals struct {
	paths     kpath.Paths
	state     string
	socket    string
	logFormat string
	logLevel  string
	out, errw io.Writer
}

func newRootCommand(out, errw io.Writer) *cobra.Command {
	g := &globals{paths: kpath.Default(), out: out, errw: errw}
	root := &cobra.Command{
		Use:   "selfprotect",
		Short: "Isolate failing memory pages and CPUs before corrected errors turn fatal",
		Long: `selfprotect watches corrected hardware errors (MCE tracepoints, EDAC counters),
diagnoses failing pages, CPUs and DIMMs with per-resource rate engines, and
soft-offlines pages or hot-offlines CPUs within safety budgets.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errw)
	f := root.PersistentFlags()
	f.StringVar(&g.paths.Sys, "sysfs", g.paths.Sys, "sysfs mount point")
	f.StringVar(&g.paths.Proc, "procfs", g.paths.Proc, "procfs mount point")
	f.StringVar(&g.paths.Tracing, "tracefs", "", "tracefs mount point (default /sys/kernel/tracing, else <debugfs>/tracing)")
	f.StringVar(&g.paths.Debug, "debugfs", g.paths.Debug, "debugfs mount point")
	f.StringVar(&g.paths.Dev, "devfs", g.paths.Dev, "devtmpfs mount point")
	f.StringVar(&g.state, "state", "/var/lib/selfprotect", "state directory (SQLite store, lock)")
	f.StringVar(&g.socket, "socket", "/run/selfprotect/selfprotect.sock", "control socket")
	f.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")

	root.AddCommand(
		newRunCommand(g),
		newStatusCommand(g),
		newPauseCommand(g, "pause"),
		newPauseCommand(g, "resume"),
		newCheckConfigCommand(g),
		newAlertCommand(g),
		newFaultyCommand(g),
		newEventsCommand(g),
		newLevelsCommand(g),
		newExplainCommand(g),
		newReplayCommand(g),
		newVersionCommand(g),
		newGenDocsCommand(),
		newResolveCommand(g, "repair", "The suspect was repaired: undo the case's CPU offlines, re-arm its engines, stop re-isolating it"),
		newResolveCommand(g, "replaced", "The FRU was replaced: like repair"),
		newResolveCommand(g, "acquit", "The case was wrong: like repair, recorded as acquitted"),
	)
	addSimCommands(root, g)
	return root
}

func (g *globals) resolvedPaths() kpath.Paths { return g.paths.Resolve() }

func (g *globals) dbPath() string { return filepath.Join(g.state, "selfprotect.db") }

func (g *globals) logger() (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(g.errw)
	switch strings.ToLower(g.logFormat) {
	case "text":
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
	}
	lvl, err := logrus.ParseLevel(g.logLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	log.SetLevel(lvl)
	return log, nil
}

func newVersionCommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				return jsonout.Write(g.out, jsonout.Version{Version: version})
			}
			fmt.Fprintf(g.out, "selfprotect %s\n", version)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
