package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/kpath"
)

const defaultPolicyPath = "/etc/selfprotect/selfprotect.yaml"

// softMemoryLimit is the Go runtime's soft memory limit for the daemon:
// three quarters of the unit's MemoryMax, leaving room for what the
// runtime does not count (SQLite's C-side caches, code).
const softMemoryLimit = 192 << 20

func newRunCommand(g *globals) *cobra.Command {
	var policyPath string
	var dryRun bool
	var retention time.Duration
	var metricsListen string
	var noEBPF bool
	var health time.Duration
	var cpuProfile, heapProfile string
	var ebpfArmAfter time.Duration
	var handoverAfter, ebpfDieAfter time.Duration // test only, as ebpfArmAfter
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon (as root, normally from systemd)",
		Long: `Run the daemon. Without --config the built-in policy is used (see check-config).
SIGTERM/SIGINT stop it cleanly, SIGHUP reloads the policy file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if policyPath == defaultPolicyPath {
				if _, err := os.Stat(policyPath); os.IsNotExist(err) {
					log.WithField("file", policyPath).Info("no policy file; using the built-in policy (see check-config)")
					policyPath = ""
				}
			}
			// The unit caps the service at MemoryMax=256M; without a
			// limit of its own the GC would let the heap reach twice
			// the live data and meet that cap as an OOM kill. GOMEMLIMIT
			// in the environment wins.
			if os.Getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(softMemoryLimit)
			}
			if err := disableTHP(); err != nil {
				log.WithError(err).Warn("transparent huge pages stay on: the resident set may grow by 2 MB pages")
			}
			if heapProfile != "" {
				runtime.MemProfileRate = defaultMemProfileRate
			}
			d, err := daemon.New(daemon.Options{
				Paths: g.resolvedPaths(), FS: kpath.OS{}, StateDir: g.state, Socket: g.socket,
				PolicyPath: policyPath, DryRun: dryRun, Version: version, Log: log, EventRetention: retention, MetricsListen: metricsListen,
				NoEBPF: noEBPF, HealthInterval: health, EBPFArmAfter: ebpfArmAfter, HandoverAfter: handoverAfter, EBPFDieAfter: ebpfDieAfter,
			})
			if err != nil {
				return err
			}
			if cpuProfile != "" {
				stopProfile, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			if heapProfile != "" {
				defer startHeapProfile(heapProfile, log)()
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			reload := make(chan struct{}, 1)
			go func() {
				for range hup {
					select {
					case reload <- struct{}{}:
					default:
					}
				}
			}()
			return d.Run(ctx, reload)
		},
	}
	cmd.Flags().StringVarP(&policyPath, "config", "c", defaultPolicyPath,
		"policy file (YAML); when the default file does not exist the built-in policy is used")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "127.0.0.1:9473", "Prometheus /metrics address (loopback unless you mean it); empty disables")
	cmd.Flags().DurationVar(&retention, "event-retention", 30*24*time.Hour, "how long the error history is kept (cases and actions are kept)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "log and record what would be done, write nothing to the kernel")
	cmd.Flags().BoolVar(&noEBPF, "no-ebpf", false, "read the tracepoints through tracefs only, never through eBPF probes")
	cmd.Flags().DurationVar(&health, "health-interval", daemon.DefaultHealthInterval,
		"how often sources, the trace instance and the budgets are checked and the systemd watchdog pinged (at least twice per WatchdogSec)")
	// The storm and latency benches profile the daemon where it runs (a
	// QEMU guest); not an operator's knob.
	cmd.Flags().StringVar(&cpuProfile, "cpu-profile", "", "write a pprof CPU profile of the run to FILE")
	_ = cmd.Flags().MarkHidden("cpu-profile")
	cmd.Flags().StringVar(&heapProfile, "heap-profile", "", "on SIGUSR1, write a pprof heap profile to FILE and log the runtime's memory classes")
	_ = cmd.Flags().MarkHidden("heap-profile")
	// The kernel suite's hand-over scenario: eBPF arms late on purpose, so
	// tracefs covers the start and hands over. Test only: a host gains
	// nothing by reading through tracefs first.
	cmd.Flags().DurationVar(&ebpfArmAfter, "test-ebpf-arm-after", 0, "test only: keep the eBPF source unavailable until this long after start, then arm it")
	_ = cmd.Flags().MarkHidden("test-ebpf-arm-after")
	// Test only: widens the hand-over's overlap so a storm falls in it.
	cmd.Flags().DurationVar(&handoverAfter, "test-handover-after", 0, "test only: keep tracefs reading this long after eBPF armed before it stands down")
	_ = cmd.Flags().MarkHidden("test-handover-after")
	cmd.Flags().DurationVar(&ebpfDieAfter, "test-ebpf-die-after", 0, "test only: make the eBPF reader fail this long after it started, leaving records unread")
	_ = cmd.Flags().MarkHidden("test-ebpf-die-after")
	return cmd
}

// startCPUProfile profiles until the returned function is called; the
// profile is complete only after a clean stop (SIGTERM).
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating the CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting the CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
