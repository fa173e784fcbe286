package main

import (
	"context"
	"fmt"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/kpath"
	"github.com/selfprotect/selfprotect/sim"
)

// addSimCommands wires the simulator: `sim build|serve|flags` (hidden, used
// by tests and the demo) and `inject`.
func addSimCommands(root *cobra.Command, g *globals) {
	simCmd := &cobra.Command{
		Use:    "sim",
		Short:  "Run the fault-injection simulator (a fake machine in a directory)",
		Hidden: true,
	}
	var prof sim.Profile
	var dir string
	build := &cobra.Command{
		Use:   "build",
		Short: "Write a simulated machine's /sys, /proc, tracefs and debugfs into --dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := sim.Build(dir, prof)
			if err != nil {
				return err
			}
			defer m.Close()
			fmt.Fprintln(g.out, simFlags(dir))
			return nil
		},
	}
	addProfileFlags(build, &prof)
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the simulated kernel for the tree in --dir until SIGTERM (builds it first with the profile flags if absent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := openOrBuild(dir, prof)
			if err != nil {
				return err
			}
			defer m.Close()
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return m.Serve(ctx)
		},
	}
	addProfileFlags(serve, &prof)
	flags := &cobra.Command{
		Use:   "flags",
		Short: "Print the path flags that point selfprotect at the tree in --dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(g.out, simFlags(dir))
			return nil
		},
	}
	for _, c := range []*cobra.Command{build, serve, flags} {
		c.Flags().StringVar(&dir, "dir", "", "simulator directory")
		_ = c.MarkFlagRequired("dir")
		simCmd.AddCommand(c)
	}
	root.AddCommand(simCmd, newInjectCommand(g), newDemoCommand(g))
}

// openOrBuild reuses a tree built earlier (its profile is saved in it).
func openOrBuild(dir string, prof sim.Profile) (*sim.Machine, error) {
	if m, err := sim.Open(dir); err == nil {
		return m, nil
	}
	return sim.Build(dir, prof)
}

func addProfileFlags(c *cobra.Command, p *sim.Profile) {
	c.Flags().StringVar(&p.Kernel, "kernel", "6.12", "kernel whose formats to use: 6.1 or 6.12")
	c.Flags().StringVar(&p.CPU, "cpu", "intel", "CPU vendor: intel or amd")
	c.Flags().IntVar(&p.CPUs, "cpus", 4, "number of CPUs")
	c.Flags().IntVar(&p.ThreadsPerCore, "threads-per-core", 1, "SMT threads per core")
	c.Flags().IntVar(&p.MemoryMB, "memory-mb", 1024, "memory size")
	c.Flags().BoolVar(&p.EDAC, "edac", false, "an EDAC driver is bound (memory controllers in sysfs)")
	c.Flags().BoolVar(&p.CEC, "cec", false, "the kernel's RAS CEC is enabled (6.12 only)")
	c.Flags().BoolVar(&p.SMCA, "smca", false, "the AMD model is a Zen part: DRAM errors from UMC banks (IPID names the channel)")
	c.Flags().BoolVar(&p.RankLabels, "rank-labels", false, "Zen with EDAC: keep amd64_edac's own labels, one per rank, not one per DIMM")
	c.Flags().StringVar(&p.FirmwareFirst, "firmware-first", "", "memory errors reach the OS through firmware: ghes (mc_event only) or emca (mce_record + extlog_mem_event)")
}

// simFlags are the path flags for a tree laid out as kpath.Under(dir).
func simFlags(dir string) string {
	p := kpath.Under(dir)
	return fmt.Sprintf("--sysfs %s --procfs %s --tracefs %s --debugfs %s --devfs %s", p.Sys, p.Proc, p.Tracing, p.Debug, p.Dev)
}

func newInjectCommand(g *globals) *cobra.Command {
	var dir, scenario, pages string
	var addr uint64
	var cpu, count, mc, dimm int
	cmd := &cobra.Command{
		Use:   "inject --sim DIR (--scenario FILE | KIND)",
		Short: "Inject hardware errors into a running simulator",
		Long: `Inject errors into the simulator serving DIR. KIND is one of
memory-ce (--addr --count --cpu), memory-ce-no-syndrome (the same on a Zen part whose
UMC left MCA_SYND not valid), memory-ue (--addr --cpu), cache-ce (--cpu --count),
edac-ce (--mc --dimm --count: a counter bump no tracepoint reported),
storm (--count --pages ADDR,ADDR...), memory-failure (--addr: the kernel poisons the page itself).
--scenario plays a YAML scenario instead.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sim.Dial(dir)
			if err != nil {
				return fmt.Errorf("connecting to the simulator in %s (is `selfprotect sim serve --dir %s` running?): %w", dir, dir, err)
			}
			defer c.Close()
			if scenario != "" {
				sc, err := sim.LoadScenario(scenario)
				if err != nil {
					return err
				}
				return sim.Player{Injector: c}.Play(cmd.Context(), sc)
			}
			if len(args) != 1 {
				return fmt.Errorf("need a KIND or --scenario")
			}
			switch args[0] {
			case sim.KindMemoryCE:
				return c.InjectMemoryCE(addr, count, cpu)
			case sim.KindMemoryCENoSyndrome:
				return c.InjectMemoryCENoSyndrome(addr, count, cpu)
			case sim.KindMemoryUE:
				return c.InjectMemoryUE(addr, cpu)
			case sim.KindCacheCE:
				return c.InjectCacheCE(cpu, count)
			case sim.KindEDACCE:
				return c.InjectEDAC(mc, dimm, uint64(count))
			case sim.KindMemoryFailure:
				return c.KernelMemoryFailure(addr)
			case sim.KindStorm:
				var list []uint64
				for _, p := range strings.Split(pages, ",") {
					v, err := strconv.ParseUint(strings.TrimSpace(p), 0, 64)
					if err != nil {
						return fmt.Errorf("--pages: %q: %w", p, err)
					}
					list = append(list, v)
				}
				return c.Storm(count, list)
			}
			return fmt.Errorf("unknown kind %q", args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "sim", "", "simulator directory")
	_ = cmd.MarkFlagRequired("sim")
	f.StringVar(&scenario, "scenario", "", "scenario file (YAML)")
	f.Uint64Var(&addr, "addr", 0, "physical address")
	f.IntVar(&cpu, "cpu", 1, "CPU")
	f.IntVar(&count, "count", 1, "number of errors")
	f.IntVar(&mc, "mc", 0, "EDAC memory controller")
	f.IntVar(&dimm, "dimm", 0, "DIMM index on the controller")
	f.StringVar(&pages, "pages", "0x100000", "storm: comma-separated physical addresses")
	return cmd
}
