package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/jsonout"
	"github.com/selfprotect/selfprotect/replay"
	"github.com/selfprotect/selfprotect/sim/fleetgen"
)

func newReplayCommand(g *globals) *cobra.Command {
	var (
		policySpec string
		tracePath  string
		rasdaemon  []string
		mcelogs    []string
		stores     []string
		hostName   string
		compare    []string
		host       replay.HostSpec
		ramGiB     uint64
		progress   bool
		grouped    bool
		htmlOut    string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "replay (--trace FILE | --store DIR... | --rasdaemon DB... | --mcelog LOG...) [--policy FILE|builtin:NAME] [--compare POLICY...]",
		Short: "What would a policy have done on a recorded or generated error history?",
		Long: `replay runs the daemon's policy engine and budget checks over a trace of
corrected and uncorrected errors (JSON lines, see the README), one simulated
machine per host, with each record's own time, and reports per policy: pages
and CPUs retired, memory retired, DIMM replacement cases and their lead time
before the DIMM's first uncorrected error, and the share of pages with an
uncorrected error that were retired (or whose DIMM was flagged) before it.

Policies are files or built-ins: ` + "`builtin:selfprotect`" + ` (the default policy),
builtin:rasdaemon, builtin:mcelog, builtin:cec, builtin:cec-2, builtin:fma,
or builtin:anchors for all five anchors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tracePath == "" && len(stores)+len(rasdaemon)+len(mcelogs) == 0 {
				return fmt.Errorf("--trace, --store, --rasdaemon or --mcelog is required (a JSON-lines trace, - for stdin, state directories, rasdaemon databases or mcelog logs; write a trace with 'selfprotect replay gen')")
			}
			if hostName != "" && len(stores)+len(rasdaemon)+len(mcelogs) > 1 {
				return fmt.Errorf("--host names one machine; with several --store, --rasdaemon or --mcelog inputs each host is named after its file or directory")
			}
			policies, err := replay.LoadPolicy(policySpec)
			if err != nil {
				return err
			}
			for _, c := range compare {
				ps, err := replay.LoadPolicy(c)
				if err != nil {
					return err
				}
				policies = append(policies, ps...)
			}
			host.RAMMiB = ramGiB * 1024
			r, err := replay.New(host, policies...)
			if err != nil {
				return err
			}
			if grouped {
				r.Grouped()
			}
			if tracePath != "" {
				if err := replayTrace(g, r, tracePath, progress); err != nil {
					return err
				}
			}
			for _, dir := range stores {
				host, err := replay.HostFromPath(filepath.Clean(dir), hostName)
				if err != nil {
					return err
				}
				recs, err := replay.ReadStore(dir, host)
				if err != nil {
					return err
				}
				if err := r.AddRaw(filepath.Join(dir, replay.StoreFile), recs); err != nil {
					return err
				}
			}
			for _, db := range rasdaemon {
				host, err := replay.HostFromPath(db, hostName)
				if err != nil {
					return err
				}
				recs, err := replay.ReadRasdaemon(db, host)
				if err != nil {
					return err
				}
				if err := r.AddRaw(db, recs); err != nil {
					return err
				}
			}
			for _, log := range mcelogs {
				if err := replayMcelog(r, log, hostName); err != nil {
					return err
				}
			}
			rep := r.Report()
			if htmlOut != "" {
				if err := writeHTML(rep, htmlOut); err != nil {
					return err
				}
			}
			if asJSON {
				return jsonout.Write(g.out, jsonout.NewReplay(rep))
			}
			return rep.WriteText(g.out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&policySpec, "policy", replay.BuiltinPrefix+"selfprotect", "policy file or builtin:NAME")
	f.StringVar(&tracePath, "trace", "", "JSON-lines trace to replay (- for stdin)")
	f.StringArrayVar(&stores, "store", nil, "a selfprotect state directory whose event history to replay (repeatable, one per machine; read-only, works while the daemon runs)")
	f.StringArrayVar(&rasdaemon, "rasdaemon", nil, "rasdaemon SQLite database to replay (repeatable, one per machine; schema of rasdaemon 0.8)")
	f.StringArrayVar(&mcelogs, "mcelog", nil, "mcelog text log to replay (repeatable, one per machine)")
	f.StringVar(&hostName, "host", "", "host name for a single --store, --rasdaemon or --mcelog input (default: its directory or file name)")
	f.StringArrayVar(&compare, "compare", nil, "another policy to replay beside it (repeatable; file or builtin:NAME, builtin:anchors for all anchors)")
	f.Uint64Var(&ramGiB, "ram-gib", 256, "RAM of hosts the trace does not describe, GiB")
	f.IntVar(&host.CPUs, "cpus", 64, "CPUs of hosts the trace does not describe")
	f.IntVar(&host.ThreadsPerCore, "threads-per-core", 2, "SMT threads per core of hosts the trace does not describe")
	f.BoolVar(&progress, "progress", false, "show progress on stderr")
	f.StringVar(&htmlOut, "html", "", "also write the report as a self-contained HTML page with plots to this file")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON (schema: doc/json.md) instead of the text table")
	f.BoolVar(&grouped, "grouped", false, "the trace holds each host's records in one block (as 'replay gen' writes it): free a host's engines when the next starts, so memory stays bounded on fleet-sized traces")
	cmd.AddCommand(newReplayGenCommand(g))
	return cmd
}

func newReplayGenCommand(g *globals) *cobra.Command {
	p := fleetgen.Defaults()
	var (
		out      string
		days     int
		start    string
		progress bool
	)
	cmd := &cobra.Command{
		Use:   "gen --out FILE [--hosts N] [--days D] [--seed S]",
		Short: "Write a synthetic fleet error history calibrated on published field studies",
		Long: `gen writes a trace for replay: DRAM faults per device at field-study FIT
rates by mode (single-bit to multi-rank, transient and permanent), heavy-tailed
bursty corrected errors, uncorrected errors that follow some faults, and a few
failing core caches. Parameters and their sources: sim/fleetgen/params.go.
The same seed and flags always give the same bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required (- for stdout)")
			}
			t, err := time.Parse(time.RFC3339, start)
			if err != nil {
				return fmt.Errorf("--start: want RFC 3339 like 2026-01-01T00:00:00Z: %w", err)
			}
			p.Start, p.Duration = t, time.Duration(days)*24*time.Hour
			w, closeOut := g.out, func() error { return nil }
			if out != "-" {
				f, err := os.Create(out)
				if err != nil {
					return fmt.Errorf("creating trace: %w", err)
				}
				w, closeOut = f, f.Close
			}
			var report func(done, total int)
			if progress {
				report = func(done, total int) {
					if done == total || done%max(total/100, 1) == 0 {
						fmt.Fprintf(g.errw, "\rhosts %d/%d (%d%%)", done, total, 100*done/total)
					}
				}
			}
			st, err := fleetgen.Generate(w, p, report)
			if cerr := closeOut(); err == nil && cerr != nil {
				err = fmt.Errorf("closing trace: %w", cerr)
			}
			if err != nil {
				return err
			}
			if progress {
				fmt.Fprintln(g.errw)
			}
			fmt.Fprintf(g.errw, "wrote %d records for %d hosts (%d with errors): %d corrected memory errors, %d uncorrected, %d cache errors\n",
				st.Records, st.Hosts, st.HostsWithErrors, st.CorrectedErrors, st.UEs, st.CacheErrors)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "trace file to write (- for stdout)")
	f.IntVar(&p.Hosts, "hosts", p.Hosts, "hosts in the fleet")
	f.IntVar(&days, "days", 365, "length of the history in days")
	f.StringVar(&start, "start", p.Start.Format(time.RFC3339), "start of the history")
	f.Uint64Var(&p.Seed, "seed", p.Seed, "random seed")
	f.Float64Var(&p.FITScale, "fit-scale", p.FITScale, "multiplier of every DRAM fault rate")
	f.IntVar(&p.DIMMsPerHost, "dimms", p.DIMMsPerHost, "DIMMs per host")
	f.IntVar(&p.DIMMGiB, "dimm-gib", p.DIMMGiB, "DIMM size in GiB")
	f.IntVar(&p.CPUs, "cpus", p.CPUs, "CPUs per host")
	f.BoolVar(&p.RowDecode, "rows", p.RowDecode, "write each memory error's DRAM row (as decoding EDAC drivers do)")
	f.BoolVar(&progress, "progress", false, "show progress on stderr")
	return cmd
}

func writeHTML(rep *replay.Report, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating HTML report: %w", err)
	}
	if err := rep.WriteHTML(f); err != nil {
		f.Close()
		return fmt.Errorf("writing HTML report %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing HTML report %s: %w", path, err)
	}
	return nil
}

func replayTrace(g *globals, r *replay.Replayer, path string, progress bool) error {
	in, size, closeIn, err := openTrace(path)
	if err != nil {
		return err
	}
	defer closeIn()
	if progress && size > 0 {
		in = &progressReader{r: in, size: size, w: g.errw}
	}
	if err := r.ReadTrace(path, in); err != nil {
		return err
	}
	if progress {
		fmt.Fprintln(g.errw)
	}
	return nil
}

func replayMcelog(r *replay.Replayer, path, hostName string) error {
	host, err := replay.HostFromPath(path, hostName)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening mcelog log: %w", err)
	}
	defer f.Close()
	recs, err := replay.ReadMcelog(path, f, host)
	if err != nil {
		return err
	}
	return r.AddRaw(path, recs)
}

// openTrace opens a trace file or stdin and returns its size when known.
func openTrace(path string) (io.Reader, int64, func(), error) {
	if path == "-" {
		return os.Stdin, 0, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("opening trace: %w", err)
	}
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	return f, size, func() { f.Close() }, nil
}

// progressReader prints how much of the trace was read, at most once per
// percent.
type progressReader struct {
	r         io.Reader
	size, n   int64
	lastShown int64
	w         io.Writer
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if pct := 100 * p.n / p.size; pct != p.lastShown {
		p.lastShown = pct
		fmt.Fprintf(p.w, "\rreplayed %d%% of %d MB", pct, p.size>>20)
	}
	return n, err
}
