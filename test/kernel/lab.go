package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrNoDaemon means the selfprotect binary is not built (or not static), so
// scenarios that run the daemon cannot.
var ErrNoDaemon = errors.New("selfprotect daemon binary not available")

// GuestPackage is the import path of the in-guest helper.
const GuestPackage = "github.com/selfprotect/selfprotect/test/kernel/guest"

// Lab prepares guests: host tools, kernels (fetched once per series), the
// guest helper, and the daemon binary.
type Lab struct {
	CacheDir  string
	WorkDir   string
	Busybox   string
	Guest     string
	Daemon    string // empty when missing; DaemonErr says why
	DaemonErr error
	// Hardening is the shipped unit's privilege set: every daemon in a
	// guest runs under it, launched through Setpriv (util-linux).
	Hardening Hardening
	Setpriv   string
	Launch    []string // Hardening.Launch: the daemon's command prefix
	Apt       *Apt

	// Timeout replaces the boot timeout of runs that set none
	// (SELFPROTECT_KERNEL_TIMEOUT): on a machine shared with other
	// emulators a guest can take minutes just to reach /init.
	Timeout time.Duration

	mu      sync.Mutex
	kernels map[Series]*kernelOnce
	slots   chan struct{} // bounds concurrent guests (the host has 2 cores)
}

type kernelOnce struct {
	once sync.Once
	k    *Kernel
	err  error
}

// MaxGuests is how many guests run at once by default: each TCG guest
// keeps one host core busy.
const MaxGuests = 2

// NewLab refreshes the package lists (as root, once per run: host tools
// and kernels are then resolved against what the archive serves today),
// installs missing host tools, reads the shipped unit's privileges
// (UnitFile), builds the guest helper into workDir and
// locates the daemon: daemonBin when set (from SELFPROTECT_BIN), else
// defaultDaemon.
func NewLab(ctx context.Context, cacheDir, workDir, daemonBin, defaultDaemon string) (*Lab, error) {
	apt := NewApt()
	// A failed refresh (no network) is not fatal here: tools may be
	// installed and kernels cached already. Apt reports it if it matters.
	_ = apt.RefreshOnce(ctx)
	if err := EnsureHostTools(ctx, apt); err != nil {
		return nil, err
	}
	l := &Lab{CacheDir: cacheDir, WorkDir: workDir, Busybox: BusyboxPath, Apt: apt, kernels: map[Series]*kernelOnce{},
		slots: make(chan struct{}, MaxGuests)}
	var err error
	if l.Hardening, err = LoadHardening(UnitFile); err != nil {
		return nil, err
	}
	if l.Setpriv, err = exec.LookPath("setpriv"); err != nil {
		return nil, fmt.Errorf("%w: setpriv (util-linux): %v", ErrHostToolsMissing, err)
	}
	tables, err := LoadSyscallTables(ctx)
	if err != nil {
		return nil, err
	}
	if l.Launch, err = l.Hardening.Launch(tables); err != nil {
		return nil, fmt.Errorf("%s: %w", UnitFile, err)
	}
	l.Guest = filepath.Join(workDir, "guest")
	if err := BuildGuest(ctx, l.Guest); err != nil {
		return nil, err
	}
	if daemonBin == "" {
		daemonBin = defaultDaemon
	}
	switch abs, err := filepath.Abs(daemonBin); {
	case err != nil:
		l.DaemonErr = fmt.Errorf("%w: %v", ErrNoDaemon, err)
	case !fileExists(abs):
		l.DaemonErr = fmt.Errorf("%w: %s does not exist (make build)", ErrNoDaemon, abs)
	case !isStaticELF(abs):
		l.DaemonErr = fmt.Errorf("%w: %s is not a static executable", ErrNoDaemon, abs)
	default:
		l.Daemon = abs
	}
	return l, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// BuildGuest compiles the guest helper as a static binary.
func BuildGuest(ctx context.Context, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go" // where this project's machines keep Go
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, GuestPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the guest helper: %w\n%s", err, b)
	}
	return nil
}

// Kernel fetches the series' kernel once per Lab.
func (l *Lab) Kernel(ctx context.Context, s Series) (*Kernel, error) {
	l.mu.Lock()
	ko, ok := l.kernels[s]
	if !ok {
		ko = &kernelOnce{}
		l.kernels[s] = ko
	}
	l.mu.Unlock()
	ko.once.Do(func() { ko.k, ko.err = l.Apt.Fetch(ctx, s, l.CacheDir) })
	return ko.k, ko.err
}

// RunOptions tune one guest run.
type RunOptions struct {
	WithDaemon bool
	Timeout    time.Duration
	// Disk is a raw image attached as /dev/vda; the guest gets the
	// modules to mount it (DiskModules).
	Disk string
	// ParallelVCPUs: see BootConfig.
	ParallelVCPUs bool
}

// Run builds the scenario's initramfs and boots it on the cell.
func (l *Lab) Run(ctx context.Context, cell Cell, sc Scenario, opt RunOptions) (*Run, error) {
	k, err := l.Kernel(ctx, cell.Series)
	if err != nil {
		return nil, err
	}
	p := Payload{Kernel: k, Busybox: l.Busybox, Guest: l.Guest}
	if opt.Disk != "" {
		if p.Extra, err = DiskModulesFor(ctx, k); err != nil {
			return nil, err
		}
	}
	if opt.WithDaemon {
		if l.Daemon == "" {
			return nil, l.DaemonErr
		}
		p.Daemon = l.Daemon
		p.Tools = []string{l.Setpriv}
		p.Env = []string{"HARDEN=" + strings.Join(l.Launch, " "),
			"HARDEN_NO_FILTER=" + strings.Join(l.Hardening.LaunchWithoutFilter(), " ")}
	}
	dir, err := os.MkdirTemp(l.WorkDir, cell.String()+"-"+sc.Name+"-")
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := BuildInitramfs(p, sc, initrd); err != nil {
		return nil, err
	}
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-l.slots }()
	if opt.Timeout == 0 {
		opt.Timeout = l.Timeout
	}
	run, err := Boot(ctx, BootConfig{Kernel: k, Initrd: initrd, CPU: cell.CPU, Append: sc.Append, Timeout: opt.Timeout, Disk: opt.Disk, ParallelVCPUs: opt.ParallelVCPUs})
	if run != nil {
		// Keep the console next to the image for post-mortems.
		_ = os.WriteFile(filepath.Join(dir, "console.log"), []byte(run.Console), 0o644)
	}
	return run, err
}
