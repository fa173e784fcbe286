package kernel

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// UnitFile is the systemd unit the package ships, relative to this
// package's directory (where `go test` runs): the guest takes the daemon's
// privileges from it, so the suite cannot drift from what is installed.
const UnitFile = "../../packaging/selfprotect.service"

// Hardening is the part of the unit's [Service] section the guest
// reproduces without systemd: the capabilities the daemon keeps and
// NoNewPrivileges. The unit runs the daemon as root (no User=), so the
// permitted and effective sets after exec are the bounding set.
type Hardening struct {
	Bounding        []string // CAP_* names, in the unit's order
	Ambient         []string
	NoNewPrivileges bool

	// The file-system sandbox, reproduced with a mount namespace (guest
	// sandbox). PrivateDevices, ProtectHome, the other Protect* settings
	// and cgroup limits are not reproduced.
	ProtectSystem         string // "strict" or ""
	ProtectKernelTunables bool
	PrivateTmp            bool
	ReadWritePaths        []string // "-" prefix: may be missing
	StateDirectory        []string // under /var/lib
	RuntimeDirectory      []string // under /run

	// The system-call sandbox, reproduced with a seccomp filter (guest
	// seccomp; SyscallTables expands the groups).
	SystemCallFilter        []string // names and @groups, allowed
	SystemCallErrorNumber   string
	RestrictAddressFamilies []string
	MemoryDenyWriteExecute  bool

	// TimerSlack is the timer slack every thread of the daemon starts
	// with (guest timerslack; 0: the launcher's own, as without the
	// setting).
	TimerSlack time.Duration
}

// capNumbers are the kernel's capability numbers, from x/sys/unix rather
// than from setpriv's own table: the expected masks must not come from the
// tool under test.
var capNumbers = map[string]int{
	"CAP_CHOWN": unix.CAP_CHOWN, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE,
	"CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH, "CAP_FOWNER": unix.CAP_FOWNER,
	"CAP_FSETID": unix.CAP_FSETID, "CAP_KILL": unix.CAP_KILL, "CAP_SETGID": unix.CAP_SETGID,
	"CAP_SETUID": unix.CAP_SETUID, "CAP_SETPCAP": unix.CAP_SETPCAP,
	"CAP_LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE, "CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_BROADCAST": unix.CAP_NET_BROADCAST, "CAP_NET_ADMIN": unix.CAP_NET_ADMIN,
	"CAP_NET_RAW": unix.CAP_NET_RAW, "CAP_IPC_LOCK": unix.CAP_IPC_LOCK, "CAP_IPC_OWNER": unix.CAP_IPC_OWNER,
	"CAP_SYS_MODULE": unix.CAP_SYS_MODULE, "CAP_SYS_RAWIO": unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT": unix.CAP_SYS_CHROOT, "CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE,
	"CAP_SYS_PACCT": unix.CAP_SYS_PACCT, "CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN,
	"CAP_SYS_BOOT": unix.CAP_SYS_BOOT, "CAP_SYS_NICE": unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "CAP_SYS_TIME": unix.CAP_SYS_TIME,
	"CAP_SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG, "CAP_MKNOD": unix.CAP_MKNOD, "CAP_LEASE": unix.CAP_LEASE,
	"CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE, "CAP_AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL,
	"CAP_SETFCAP": unix.CAP_SETFCAP, "CAP_MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE,
	"CAP_MAC_ADMIN": unix.CAP_MAC_ADMIN, "CAP_SYSLOG": unix.CAP_SYSLOG,
	"CAP_WAKE_ALARM": unix.CAP_WAKE_ALARM, "CAP_BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND,
	"CAP_AUDIT_READ": unix.CAP_AUDIT_READ, "CAP_PERFMON": unix.CAP_PERFMON, "CAP_BPF": unix.CAP_BPF,
	"CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// LoadHardening reads the hardening of the unit file at path.
func LoadHardening(path string) (Hardening, error) {
	f, err := os.Open(path)
	if err != nil {
		return Hardening{}, fmt.Errorf("reading the unit the daemon is hardened by: %w", err)
	}
	defer f.Close()
	h, err := ParseHardening(f)
	if err != nil {
		return Hardening{}, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// ParseHardening reads a unit with systemd's rules for the settings it
// reproduces: capability lists accumulate over repeated lines and an empty
// assignment resets them. Whatever the guest could not reproduce faithfully
// (an inverted "~" list, a non-root User=) is an error, not a guess.
func ParseHardening(r io.Reader) (Hardening, error) {
	var h Hardening
	section := ""
	lineNo := 0
	sc := bufio.NewScanner(r)
	var pending string
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		// A trailing backslash continues the setting on the next line.
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, pending = pending+line, ""
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			continue
		}
		if section != "Service" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return Hardening{}, fmt.Errorf("line %d: no '=' in %q", lineNo, line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		var err error
		switch key {
		case "CapabilityBoundingSet":
			h.Bounding, err = capList(h.Bounding, value)
		case "AmbientCapabilities":
			h.Ambient, err = capList(h.Ambient, value)
		case "NoNewPrivileges":
			h.NoNewPrivileges, err = unitBool(value)
		case "ProtectSystem":
			switch value {
			case "strict":
				h.ProtectSystem = value
			case "", "no", "false":
				h.ProtectSystem = ""
			default:
				err = fmt.Errorf("only strict is reproduced by the guest, not %q", value)
			}
		case "ProtectKernelTunables":
			h.ProtectKernelTunables, err = unitBool(value)
		case "PrivateTmp":
			h.PrivateTmp, err = unitBool(value)
		case "ReadWritePaths":
			h.ReadWritePaths, err = pathList(h.ReadWritePaths, value, true)
		case "StateDirectory":
			h.StateDirectory, err = pathList(h.StateDirectory, value, false)
		case "RuntimeDirectory":
			h.RuntimeDirectory, err = pathList(h.RuntimeDirectory, value, false)
		case "SystemCallFilter":
			h.SystemCallFilter, err = wordList(h.SystemCallFilter, value)
		case "SystemCallErrorNumber":
			h.SystemCallErrorNumber = value
		case "SystemCallArchitectures":
			if value != "" && value != "native" {
				err = fmt.Errorf("the guest's filter admits the native architecture only, not %q", value)
			}
		case "RestrictAddressFamilies":
			h.RestrictAddressFamilies, err = wordList(h.RestrictAddressFamilies, value)
			for _, f := range h.RestrictAddressFamilies {
				if _, ok := addressFamilies[f]; !ok && err == nil {
					err = fmt.Errorf("address family %q is not known to the guest", f)
				}
			}
		case "MemoryDenyWriteExecute":
			h.MemoryDenyWriteExecute, err = unitBool(value)
		case "TimerSlackNSec":
			h.TimerSlack, err = unitNsec(value)
		case "User", "Group", "DynamicUser":
			if value != "" && value != "root" && value != "0" && value != "no" {
				err = fmt.Errorf("the guest runs the daemon as root only; reproducing %s=%s needs the harness extended", key, value)
			}
		case "SecureBits":
			if value != "" {
				err = fmt.Errorf("SecureBits=%s is not reproduced by the guest", value)
			}
		}
		if err != nil {
			return Hardening{}, fmt.Errorf("line %d: %s: %w", lineNo, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return Hardening{}, err
	}
	for _, c := range h.Ambient {
		if !slices.Contains(h.Bounding, c) {
			return Hardening{}, fmt.Errorf("ambient capability %s is outside CapabilityBoundingSet: systemd would drop it", c)
		}
	}
	return h, nil
}

func capList(prev []string, value string) ([]string, error) {
	if value == "" {
		return nil, nil
	}
	if strings.HasPrefix(value, "~") {
		return nil, fmt.Errorf("an inverted list (%q) is not reproduced by the guest: name the capabilities kept", value)
	}
	out := prev
	for _, name := range strings.Fields(value) {
		if _, ok := capNumbers[name]; !ok {
			return nil, fmt.Errorf("unknown capability %q", name)
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// wordList accumulates an allow-list setting; an inverted ("~") list is
// not reproduced.
func wordList(prev []string, value string) ([]string, error) {
	if value == "" {
		return nil, nil
	}
	if strings.HasPrefix(value, "~") {
		return nil, fmt.Errorf("an inverted list (%q) is not reproduced by the guest", value)
	}
	return append(prev, strings.Fields(value)...), nil
}

// pathList accumulates a space-separated path setting. ReadWritePaths
// entries are absolute ("-" allowed); directory names are relative.
func pathList(prev []string, value string, absolute bool) ([]string, error) {
	if value == "" {
		return nil, nil
	}
	out := prev
	for _, p := range strings.Fields(value) {
		bare := strings.TrimPrefix(p, "-")
		switch {
		case strings.HasPrefix(bare, "+"):
			return nil, fmt.Errorf("%q: the \"+\" prefix is not reproduced by the guest", p)
		case absolute != strings.HasPrefix(bare, "/"), strings.Contains(bare, ".."):
			return nil, fmt.Errorf("%q: not a path this setting takes", p)
		case !absolute && p != bare:
			return nil, fmt.Errorf("%q: no \"-\" prefix here", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// unitNsec reads a systemd time span whose bare numbers are nanoseconds
// (TimerSlackNSec=): "1ms", "500us", "2000", "1s 500ms"; empty resets.
func unitNsec(v string) (time.Duration, error) {
	units := map[string]time.Duration{"": time.Nanosecond, "ns": time.Nanosecond, "nsec": time.Nanosecond,
		"us": time.Microsecond, "usec": time.Microsecond, "ms": time.Millisecond, "msec": time.Millisecond,
		"s": time.Second, "sec": time.Second}
	var total time.Duration
	for _, part := range strings.Fields(v) {
		i := strings.IndexFunc(part, func(r rune) bool { return r < '0' || r > '9' })
		if i < 0 {
			i = len(part)
		}
		n, err := strconv.ParseInt(part[:i], 10, 64)
		unit, ok := units[part[i:]]
		if err != nil || !ok {
			return 0, fmt.Errorf("not a time span the guest reads: %q", v)
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}

func unitBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "true", "on", "1":
		return true, nil
	case "no", "false", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean: %q", v)
}

func capMask(names []string) uint64 {
	var m uint64
	for _, n := range names {
		m |= 1 << capNumbers[n]
	}
	return m
}

// BoundingMask is the CapBnd (and, for root, CapPrm and CapEff) the daemon
// must show in /proc/PID/status.
func (h Hardening) BoundingMask() uint64 { return capMask(h.Bounding) }

// AmbientMask is the CapAmb (and CapInh: systemd raises an ambient
// capability in the inheritable set, which the kernel requires) expected.
func (h Hardening) AmbientMask() uint64 { return capMask(h.Ambient) }

// SetprivArgs is the util-linux setpriv command line that gives the next
// program exactly the unit's capabilities, ending in "--".
func (h Hardening) SetprivArgs() []string {
	list := func(names []string) string {
		parts := []string{"-all"}
		for _, n := range names {
			parts = append(parts, "+"+strings.ToLower(strings.TrimPrefix(n, "CAP_")))
		}
		return strings.Join(parts, ",")
	}
	args := []string{"setpriv", "--bounding-set", list(h.Bounding), "--inh-caps", list(h.Ambient), "--ambient-caps", list(h.Ambient)}
	if h.NoNewPrivileges {
		args = append(args, "--no-new-privs")
	}
	return append(args, "--")
}

// procTunables are what ProtectKernelTunables makes read-only under /proc
// (systemd's list, as far as the guest's kernels have it).
var procTunables = []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs", "/proc/acpi", "/proc/latency_stats", "/proc/timer_list"}

// SandboxArgs is the guest helper command that enters the unit's
// file-system sandbox, ending in "--", or nil when the unit has none.
// Order matters: directories systemd creates come first, then everything
// read-only, then the exceptions.
func (h Hardening) SandboxArgs() []string {
	var ops []string
	var rw []string
	for _, d := range h.StateDirectory {
		ops = append(ops, "mkdir=/var/lib/"+d)
		rw = append(rw, "/var/lib/"+d)
	}
	for _, d := range h.RuntimeDirectory {
		ops = append(ops, "mkdir=/run/"+d)
		rw = append(rw, "/run/"+d)
	}
	if h.ProtectSystem == "strict" {
		// strict leaves the API file systems to the Protect* settings.
		ops = append(ops, "ro=/", "rw=/dev", "rw=/proc")
		if !h.ProtectKernelTunables {
			ops = append(ops, "rw=/sys")
		}
	}
	if h.ProtectKernelTunables {
		ops = append(ops, "ro=/sys")
		for _, p := range procTunables {
			ops = append(ops, "ro=-"+p)
		}
	}
	if h.PrivateTmp {
		ops = append(ops, "tmpfs=/tmp")
	}
	if h.ProtectSystem == "" && !h.ProtectKernelTunables {
		// Nothing is read-only: the writable paths change nothing.
		rw = nil
	} else {
		rw = append(rw, h.ReadWritePaths...)
	}
	for _, p := range rw {
		ops = append(ops, "rw="+p)
	}
	if len(ops) == 0 {
		return nil
	}
	return append(append([]string{"guest", "sandbox"}, ops...), "--")
}

// WritablePaths are the mount points the sandboxed daemon must see
// writable: the state and runtime directories and every ReadWritePaths
// entry (true when it may be missing).
func (h Hardening) WritablePaths() map[string]bool {
	out := map[string]bool{}
	if h.ProtectSystem == "" && !h.ProtectKernelTunables {
		return out
	}
	for _, d := range h.StateDirectory {
		out["/var/lib/"+d] = false
	}
	for _, d := range h.RuntimeDirectory {
		out["/run/"+d] = false
	}
	for _, p := range h.ReadWritePaths {
		bare, optional := strings.CutPrefix(p, "-")
		out[bare] = optional
	}
	return out
}

// TimerSlackArgs is the guest helper command that sets the unit's timer
// slack before the next program runs (every thread it makes inherits it,
// as from systemd), or nil when the unit sets none.
func (h Hardening) TimerSlackArgs() []string {
	if h.TimerSlack <= 0 {
		return nil
	}
	return []string{"guest", "timerslack", strconv.FormatInt(h.TimerSlack.Nanoseconds(), 10), "--"}
}

// Launch is the command prefix every guest daemon runs under: the mount
// sandbox (which needs every capability), the timer slack, setpriv, then
// the seccomp filter (installed last: it may forbid what the steps before
// it do).
func (h Hardening) Launch(t SyscallTables) ([]string, error) {
	sc, err := h.SeccompArgs(t)
	if err != nil {
		return nil, err
	}
	return append(h.LaunchWithoutFilter(), sc...), nil
}

// LaunchWithoutFilter is Launch less the seccomp filter: a probe shows
// with it what the filter alone refuses.
func (h Hardening) LaunchWithoutFilter() []string {
	return slices.Concat(h.SandboxArgs(), h.TimerSlackArgs(), h.SetprivArgs())
}
