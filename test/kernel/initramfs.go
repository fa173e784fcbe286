package kernel

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// busyboxApplets are the commands /init and scenario scripts may use; each
// becomes a symlink to /bin/busybox.
var busyboxApplets = []string{
	"sh", "ash", "cat", "cut", "dmesg", "echo", "grep", "head", "insmod", "kill",
	"ls", "lsmod", "mkdir", "mount", "poweroff", "printf", "ps", "rm", "sed", "seq",
	"sleep", "sync", "tail", "taskset", "test", "timeout", "touch", "tr", "true",
	"false", "uname", "usleep", "wc", "[", "expr", "umount", "switch_root",
}

// Payload is what every guest image carries besides the scenario.
type Payload struct {
	Kernel  *Kernel
	Busybox string // static busybox binary
	Guest   string // the guest helper (test/kernel/guest), static
	Daemon  string // the static selfprotect binary; empty when the scenario does not run it
	// Extra are more uncompressed modules, in load order, loaded after the
	// kernel's inject modules (the disk modules of the two-boot scenario).
	Extra []string
	// Tools are dynamically linked host programs (setpriv) copied into
	// /bin with their loader and libraries.
	Tools []string
	// Env is exported to the scenario ("NAME=value"); the daemon scenarios
	// launch the daemon through $HARDEN.
	Env []string
}

// Scenario is one guest run: a shell script run after /init has mounted
// everything and loaded the inject modules, and files under /scenario
// (policies). The script reports through `guest` subcommands, which print
// @@RESULT lines.
type Scenario struct {
	Name   string
	Script string
	Files  map[string][]byte
	// Programs are executables under /scenario (a test binary to run in
	// the guest).
	Programs map[string][]byte
	// Append is added to the kernel command line (e.g. "ras=cec_disable").
	Append string
	// SwitchRoot, when set, is the ext4 device /init mounts and hands the
	// machine to, its systemd as PID 1, once the modules are loaded:
	// Script does not run, the new root's own units do the scenario.
	SwitchRoot string
}

// BuildInitramfs writes the guest image for sc to out.
func BuildInitramfs(p Payload, sc Scenario, out string) error {
	a := NewArchive()
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "scenario", "lib/modules"} {
		a.Dir(d)
	}
	a.CharDev("dev/console", 5, 1)
	a.CharDev("dev/null", 1, 3)

	copies := []struct{ src, dst string }{{p.Busybox, "bin/busybox"}, {p.Guest, "bin/guest"}}
	if p.Daemon != "" {
		copies = append(copies, struct{ src, dst string }{p.Daemon, "bin/selfprotect"})
	}
	for _, c := range copies {
		data, err := os.ReadFile(c.src)
		if err != nil {
			return fmt.Errorf("reading %s for the initramfs: %w", c.src, err)
		}
		if !isStaticELF(c.src) {
			return fmt.Errorf("%s is not a static executable: it cannot run in the initramfs", c.src)
		}
		a.File(c.dst, data, 0o755)
	}
	for _, tool := range p.Tools {
		if err := addDynamic(a, tool); err != nil {
			return err
		}
	}
	for _, app := range busyboxApplets {
		a.Symlink("bin/"+app, "busybox")
	}
	var modules []string
	for _, m := range append(append([]string(nil), p.Kernel.Modules...), p.Extra...) {
		data, err := os.ReadFile(m)
		if err != nil {
			return fmt.Errorf("reading module %s: %w", m, err)
		}
		dst := "lib/modules/" + filepath.Base(m)
		a.File(dst, data, 0o644)
		modules = append(modules, "/"+dst)
	}
	for _, files := range []struct {
		byName map[string][]byte
		mode   uint32
	}{{sc.Files, 0o644}, {sc.Programs, 0o755}} {
		for _, n := range slices.Sorted(maps.Keys(files.byName)) {
			a.File("scenario/"+n, files.byName[n], files.mode)
		}
	}
	a.File("scenario/run.sh", []byte(sc.Script), 0o755)
	init, err := initScript(modules, p.Env, sc.SwitchRoot)
	if err != nil {
		return err
	}
	a.File("init", []byte(init), 0o755)

	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("creating %s: %w", out, err)
	}
	if _, err := a.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return f.Close()
}

// initScript mounts the kernel's filesystems, loads the modules in order,
// runs the scenario and powers off. Every outcome the host checks is a
// @@RESULT line; @@BOOTED and @@DONE bracket the run so the host can tell
// a guest that never reached /init from one that hung in the scenario.
// With switchRoot it hands over to the systemd on that device instead,
// whose units print the rest.
func initScript(modules, env []string, switchRoot string) (string, error) {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
export PATH=/bin
`)
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(v, "'\n") {
			return "", fmt.Errorf("scenario environment %q: want NAME=value without quotes or newlines", kv)
		}
		fmt.Fprintf(&b, "export %s='%s'\n", k, v)
	}
	b.WriteString(`mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t tmpfs tmpfs /tmp
echo "@@BOOTED $(cut -d' ' -f1 /proc/uptime) $(uname -r)"
# The error goes into JSON: quotes and backslashes are dropped, and echo
# folds it onto one line.
result() { echo "@@RESULT {\"step\":\"$1\",\"ok\":$2,\"error\":\"$(echo $3 | tr -d '"\\')\"}"; }
`)
	for _, m := range modules {
		name := strings.TrimSuffix(filepath.Base(m), ".ko")
		fmt.Fprintf(&b, "if out=$(insmod %s 2>&1); then result insmod:%s true; else result insmod:%s false \"$out\"; fi\n", m, name, name)
	}
	if switchRoot != "" {
		// The new root's systemd mounts what it needs; the kernel's
		// file systems move there rather than being mounted twice.
		fmt.Fprintf(&b, `mkdir -p /newroot
if ! out=$(mount -t ext4 %[1]s /newroot 2>&1); then
  result switch-root false "mounting %[1]s: $out"
  echo "@@DONE rc=1 uptime=$(cut -d' ' -f1 /proc/uptime)"
  poweroff -f
fi
umount /sys/kernel/tracing /sys/kernel/debug /tmp
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
result switch-root true ""
exec switch_root /newroot /lib/systemd/systemd
`, switchRoot)
		return b.String(), nil
	}
	b.WriteString(`sh /scenario/run.sh
echo "@@DONE rc=$? uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
`)
	return b.String(), nil
}

// addDynamic puts the host program bin into /bin with everything the
// loader needs to run it.
func addDynamic(a *Archive, bin string) error {
	files, err := dynamicClosure(bin)
	if err != nil {
		return err
	}
	files["bin/"+filepath.Base(bin)] = bin
	dsts := make([]string, 0, len(files))
	for d := range files {
		dsts = append(dsts, d)
	}
	sort.Strings(dsts)
	for _, d := range dsts {
		data, err := os.ReadFile(files[d])
		if err != nil {
			return fmt.Errorf("reading %s for the initramfs: %w", files[d], err)
		}
		a.File(d, data, 0o755)
	}
	return nil
}
