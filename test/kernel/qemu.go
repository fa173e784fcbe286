package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// CPUModel is the guest CPU QEMU emulates; it decides the MCA banks the
// guest has and the vendor mce-inject values must match.
type CPUModel string

const (
	CPUAMD   CPUModel = "amd"
	CPUIntel CPUModel = "intel"
)

// qemuCPU is the -cpu argument. Plain qemu64 reports AuthenticAMD; the
// Intel model is a Skylake-SP signature (family 6 model 85).
func (c CPUModel) qemuCPU() (string, error) {
	switch c {
	case CPUAMD:
		return "qemu64", nil
	case CPUIntel:
		return "qemu64,vendor=GenuineIntel,family=6,model=85,stepping=4", nil
	default:
		return "", fmt.Errorf("unknown CPU model %q (want %s or %s)", c, CPUAMD, CPUIntel)
	}
}

// ErrGuestTimeout means the guest did not power off in time and was killed.
var ErrGuestTimeout = errors.New("guest timed out")

// BootConfig is one guest run.
type BootConfig struct {
	Kernel  *Kernel
	Initrd  string
	CPU     CPUModel
	Append  string        // extra kernel command line
	Timeout time.Duration // default 240 s
	// Disk, when set, is a raw image attached as the guest's virtio disk
	// (/dev/vda): state that outlives the boot.
	Disk string
	// ParallelVCPUs runs each vCPU on a host thread of its own
	// (multi-threaded TCG) instead of all on one. Only benches ask for it:
	// it oopsed at boot about once in 11 boots in the lab, but one thread
	// runs one vCPU at a time, so anything that hands work from one CPU to
	// another waits for the emulator to switch, which real CPUs never do.
	ParallelVCPUs bool
}

// Run is what a guest left behind.
type Run struct {
	Console string
	Results Results
	// Booted is host time from QEMU start to /init's first line; Total to exit.
	Booted, Total time.Duration
	// GuestUptimeAtInit is the guest's own /proc/uptime at /init start.
	GuestUptimeAtInit string
	Done              bool // /init reached the end of the scenario
}

// Boot runs a guest under software emulation (KVM here is paravirtual and
// stock kernels cannot boot under it; single-threaded TCG is the variant
// that never oopsed in the lab) and collects its console. The error is
// non-nil when QEMU failed, timed out, /init never finished, or a result
// line was unparsable; Run is filled in all cases for the log.
func Boot(ctx context.Context, cfg BootConfig) (*Run, error) {
	cpu, err := cfg.CPU.qemuCPU()
	if err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 240 * time.Second
	}
	// no_timer_check on every guest, as for any VM: on a loaded host the
	// guest's early IO-APIC timer check can fail under emulation and the
	// kernel panics at boot ("IO-APIC + timer doesn't work"), seen on 6.1
	// at load ~40. It tests the emulator's timing, not our daemon.
	appendLine := strings.TrimSpace("console=ttyS0 panic=-1 quiet loglevel=4 no_timer_check " + cfg.Append)
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	accel := "tcg,thread=single"
	if cfg.ParallelVCPUs {
		accel = "tcg,thread=multi"
	}
	args := []string{"-accel", accel, "-cpu", cpu, "-smp", "4", "-m", "1G",
		"-kernel", cfg.Kernel.Vmlinuz, "-initrd", cfg.Initrd, "-append", appendLine,
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"}
	if cfg.Disk != "" {
		args = append(args, "-drive", "file="+cfg.Disk+",format=raw,if=virtio")
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.WaitDelay = 5 * time.Second
	console := &consoleBuffer{start: time.Now()}
	cmd.Stdout = console
	cmd.Stderr = console
	start := time.Now()
	runErr := cmd.Run()
	run := &Run{Console: console.String(), Total: time.Since(start), Booted: console.bootedAfter()}
	run.GuestUptimeAtInit, run.Done = bootInfo(run.Console)
	results, parseErr := ParseResults(run.Console)
	run.Results = results
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return run, fmt.Errorf("%w after %s", ErrGuestTimeout, cfg.Timeout)
	case runErr != nil:
		return run, fmt.Errorf("qemu: %w", runErr)
	case run.Booted == 0:
		return run, errors.New("guest never reached /init")
	case !run.Done:
		return run, errors.New("guest powered off before /init finished the scenario")
	case parseErr != nil:
		return run, parseErr
	}
	return run, nil
}

// bootInfo reads the guest uptime /init printed and whether it finished.
func bootInfo(console string) (uptime string, done bool) {
	for _, line := range strings.Split(console, "\n") {
		line = strings.TrimRight(line, "\r")
		if i := strings.Index(line, bootedMarker); i >= 0 {
			if f := strings.Fields(line[i+len(bootedMarker):]); len(f) > 0 {
				uptime = f[0]
			}
		}
		if strings.Contains(line, doneMarker) {
			done = true
		}
	}
	return uptime, done
}

// consoleBuffer collects QEMU's output and notes when /init first spoke.
type consoleBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	start  time.Time
	booted time.Duration
}

func (c *consoleBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.buf.Write(p)
	if c.booted == 0 && bytes.Contains(c.buf.Bytes(), []byte(bootedMarker)) {
		c.booted = time.Since(c.start)
	}
	return n, err
}

func (c *consoleBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func (c *consoleBuffer) bootedAfter() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.booted
}
