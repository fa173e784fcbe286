package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/sim"
	"github.com/selfprotect/selfprotect/store"
)

// demoPolicy polls EDAC every second so the demo need not wait a minute.
const demoPolicy = `# demo policy: the built-in defaults, EDAC polled every second
edac:
  poll_interval: 1s
`

func newDemoCommand(g *globals) *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the daemon on a simulated machine, inject faults and narrate what it does",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), g.out, keep)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the simulator directory, store and daemon log afterwards")
	return cmd
}

// demo is the narrated walk through detection, diagnosis, isolation and a
// budget refusal, against the real daemon binary on a simulated machine.
type demo struct {
	out    io.Writer
	dir    string
	socket string
	state  string
	m      *sim.Machine
	seen   map[string]int // case ID -> actions printed
	// alertsSeen counts the lines of alerts.log already printed.
	alertsSeen int
}

func runDemo(ctx context.Context, out io.Writer, keep bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	dir, err := os.MkdirTemp("", "selfprotect-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	d := &demo{out: out, dir: dir, socket: filepath.Join(dir, "selfprotect.sock"), state: filepath.Join(dir, "state"), seen: map[string]int{}}
	prof := sim.Profile{Kernel: "6.12", CPU: "intel", CPUs: 4, EDAC: true, Controllers: 2, DIMMsPerController: 2}
	d.say("== selfprotect demo ==")
	d.say("A simulated server: Debian 6.12 kernel formats, Intel CPU model, 4 CPUs, 1 GiB, an EDAC driver with 2 memory controllers × 2 DIMMs.")
	d.say("Its /sys, /proc and tracefs live in %s; the real daemon binary runs unchanged against them.", dir)
	m, err := sim.Build(filepath.Join(dir, "machine"), prof)
	if err != nil {
		return err
	}
	defer m.Close()
	d.m = m
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	go func() { _ = m.Serve(simCtx) }()

	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(demoPolicy+demoAlerts(dir)), 0o644); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(dir, "daemon.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append([]string{"run", "--config", policyPath, "--state", d.state, "--socket", d.socket, "--metrics-listen", "127.0.0.1:0"},
		strings.Fields(simFlags(m.Dir()))...)
	daemonCmd := exec.Command(exe, args...)
	daemonCmd.Stdout, daemonCmd.Stderr = logf, logf
	if err := daemonCmd.Start(); err != nil {
		return fmt.Errorf("starting the daemon: %w", err)
	}
	defer func() {
		_ = daemonCmd.Process.Signal(syscall.SIGTERM)
		_ = daemonCmd.Wait()
	}()
	d.say("\n$ selfprotect run %s", strings.Join(args[1:], " "))
	st, err := d.waitArmed(10 * time.Second)
	if err != nil {
		tail, _ := os.ReadFile(logPath)
		return fmt.Errorf("%w\ndaemon log:\n%s", err, tail)
	}
	for _, s := range st.Sources {
		d.say("   source %-10s %-11s %s", s.Name, s.State, s.Detail)
	}
	d.say("   kernel: CEC %s; EDAC %s", firstClause(st.Kernel.CEC), st.Kernel.EDAC)

	steps := []struct {
		title  string
		do     func() error
		levels fault.Resource // shown after the step: how close it is to tripping
	}{
		{"1. One corrected DRAM error on page 0x2d94: below the page rule (2 within 24h), nothing happens.",
			func() error { return m.InjectMemoryCE(0x2d94040, 1, 1) }, fault.Page(0x2d94)},
		{"2. A second corrected error on the same page: the page engine trips, the page is soft-offlined.",
			func() error { return m.InjectMemoryCE(0x2d94040, 1, 1) }, ""},
		{"3. Five corrected L0 cache errors on CPU 2 (a core-private bank): CPU 2 is taken offline.",
			func() error { return m.InjectCacheCE(2, 5) }, ""},
		{"4. Five more on CPU 3: offlining it would leave 2 of 4 CPUs online (< ceil(0.75 × 4) = 3), and one CPU was offlined within the hour: refused.",
			func() error { return m.InjectCacheCE(3, 5) }, ""},
		{"5. DIMM 0 of controller 1 reports 1000 corrected errors through its EDAC counter only: a replace-DIMM case naming its label.",
			func() error { return m.InjectEDAC(1, 0, 1000) }, ""},
		{"6. An uncorrected memory error with a valid address: no rate engine, the page is hard-offlined at once.",
			func() error { return m.InjectMemoryUE(0x3c00040, 0) }, ""},
	}
	for _, s := range steps {
		d.say("\n%s", s.title)
		if err := s.do(); err != nil {
			return fmt.Errorf("injecting: %w", err)
		}
		// The EDAC counter is polled once a second.
		if _, err := d.settle(2500 * time.Millisecond); err != nil {
			return err
		}
		if err := d.showNew(); err != nil {
			return err
		}
		d.showKernel()
		d.showAlerts()
		if s.levels != "" {
			if err := d.showLevels(s.levels); err != nil {
				return err
			}
		}
	}

	d.say("\n$ selfprotect status")
	resp, err := daemon.Call(d.socket, daemon.Request{Command: "status"}, 10*time.Second)
	if err != nil {
		return err
	}
	printStatus(indent{d.out}, resp.Status)
	d.say("\nEvery action is in the store with its evidence and undo command: `selfprotect explain CASE`, `selfprotect faulty`; what is about to trip: `selfprotect levels`.")
	if keep {
		d.say("Kept: %s (daemon log %s)", dir, logPath)
	}
	return nil
}

func (d *demo) say(format string, a ...any) { fmt.Fprintf(d.out, format+"\n", a...) }

func (d *demo) waitArmed(limit time.Duration) (*daemon.Status, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := daemon.Call(d.socket, daemon.Request{Command: "status"}, time.Second)
		if err == nil && resp.Status.Armed {
			d.say("   daemon armed after %s", time.Since(resp.Status.Started).Round(time.Millisecond))
			return resp.Status, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, errors.New("the daemon did not arm within 10 s")
}

// settle waits until the daemon has read everything and acted on it: the
// received and counted totals stop moving, no EDAC counter delta is held
// (a delta waits a few seconds for mc_events before it counts, so a quiet
// spell alone would return before an EDAC-only error reaches the engines)
// and no action is pending, for a while.
func (d *demo) settle(quiet time.Duration) (*daemon.Status, error) {
	var last [2]uint64
	stableSince := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		// A slow answer on a loaded host is asked again, not fatal: the
		// deadline bounds the whole wait.
		resp, err := daemon.Call(d.socket, daemon.Request{Command: "status"}, 5*time.Second)
		if err != nil {
			lastErr = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s := resp.Status
		if now := [2]uint64{s.Events.Received, s.Events.Counted}; now != last || s.Events.HeldDeltas > 0 || s.Pending > 0 {
			last = now
			stableSince = time.Now()
		} else if time.Since(stableSince) >= quiet {
			return s, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lastErr != nil {
		return nil, fmt.Errorf("the daemon did not settle within 30 s (last status call: %w)", lastErr)
	}
	return nil, errors.New("the daemon did not settle within 30 s")
}

// showLevels is `selfprotect levels R`: what the engines count for R.
func (d *demo) showLevels(r fault.Resource) error {
	d.say("   $ selfprotect levels %s", r)
	resp, err := daemon.Call(d.socket, daemon.Request{Command: "levels", Resource: string(r)}, 10*time.Second)
	if err != nil {
		return err
	}
	var b strings.Builder // indent wants whole lines; the table comes in cells
	printLevels(&b, resp.Levels, false)
	_, err = io.WriteString(indent{d.out}, b.String())
	return err
}

func (d *demo) showNew() error {
	st, err := store.OpenReadOnly(filepath.Join(d.state, "selfprotect.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	cases, err := st.Cases(store.CaseFilter{})
	if err != nil {
		return err
	}
	quiet := true
	for _, c := range cases {
		acts, err := st.Actions(c.ID)
		if err != nil {
			return err
		}
		n, known := d.seen[c.ID]
		if !known {
			quiet = false
			d.say("   case %s  %s  suspect %s  FRU %q", c.ID[:8], c.Diagnosis, c.Suspect, c.FRU)
			d.say("        %s", c.Summary)
		}
		for _, a := range acts[n:] {
			quiet = false
			d.say("        action %s %s → %s", a.Kind, a.Resource, a.Outcome)
			d.say("          %s", a.Detail)
			if a.Undo != "" {
				d.say("          undo: %s", a.Undo)
			}
		}
		d.seen[c.ID] = len(acts)
	}
	if quiet {
		d.say("   (no case: the engines are counting)")
	}
	return nil
}

// showKernel prints what the fake kernel itself now says, not what the
// daemon believes.
func (d *demo) showKernel() {
	p := d.m.Paths()
	online, _ := os.ReadFile(p.SysPath("devices/system/cpu/online"))
	var poisoned []string
	for _, o := range d.m.Offlined() {
		if o.Poisoned() {
			poisoned = append(poisoned, fmt.Sprintf("%s %#x", o.Kind, o.PFN))
		}
	}
	d.say("   kernel view: CPUs online %s; poisoned pages %v", strings.TrimSpace(string(online)), poisoned)
}

func firstClause(s string) string {
	if i := strings.Index(s, ":"); i > 0 {
		return s[:i]
	}
	return s
}

// indent prefixes every line written through it.
type indent struct{ w io.Writer }

func (i indent) Write(b []byte) (int, error) {
	lines := strings.SplitAfter(string(b), "\n")
	for _, l := range lines {
		if l == "" {
			continue
		}
		if _, err := io.WriteString(i.w, "   "+l); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
