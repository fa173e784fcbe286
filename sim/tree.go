package sim

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/kpath"
)

// Page flags of /proc/kpageflags (include/uapi/linux/kernel-page-flags.h).
const (
	kpfBuddy     = 1 << 10
	kpfHWPoison  = 1 << 19
	usedPageFlag = 0x400005828 // an anonymous page in use, as captured on 6.1
	pageShift    = 12
)

// state is what a later Open needs to know about a tree Build wrote.
type state struct {
	Profile Profile `json:"profile"`
	// Boot anchors the ring buffer's "local" clock (nanoseconds since
	// boot) so timestamps keep increasing across simulator restarts.
	BootUnixNano int64 `json:"boot_unix_nano"`
}

func stateDir(dir string) string { return filepath.Join(dir, ".sim") }

// Build writes the tree of a fresh machine under dir and opens it. dir may
// exist but must not already hold a simulator tree.
func Build(dir string, prof Profile) (*Machine, error) {
	prof, err := prof.WithDefaults()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(stateDir(dir), "profile.json")); err == nil {
		return nil, fmt.Errorf("building simulator in %s: a tree already exists (use Open)", dir)
	}
	w := treeWriter{paths: kpath.Under(dir), prof: prof}
	steps := []func() error{w.cpus, w.memory, w.machinecheck, w.edac, w.proc, w.tracing, w.debug, w.dev}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("building simulator in %s: %w", dir, err)
		}
	}
	st := state{Profile: prof, BootUnixNano: time.Now().UnixNano()}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding profile: %w", err)
	}
	if err := w.file(filepath.Join(stateDir(dir), "profile.json"), string(b)+"\n"); err != nil {
		return nil, err
	}
	return Open(dir)
}

type treeWriter struct {
	paths kpath.Paths
	prof  Profile
}

// file writes one attribute, creating its directory.
func (w treeWriter) file(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func (w treeWriter) files(dir string, attrs map[string]string) error {
	for name, v := range attrs {
		if err := w.file(filepath.Join(dir, name), v); err != nil {
			return err
		}
	}
	return nil
}

func mkfifo(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return fmt.Errorf("mkfifo %s: %w", path, err)
	}
	return nil
}

func rangeList(n int) string {
	cpus := make([]int, n)
	for i := range cpus {
		cpus[i] = i
	}
	return formatCPUList(cpus)
}

func (w treeWriter) cpus() error {
	p := w.prof
	dir := w.paths.SysPath("devices/system/cpu")
	all := rangeList(p.CPUs) + "\n"
	nohz := "(null)\n"
	attrs := map[string]string{
		"present": all, "possible": all, "online": all, "offline": "\n",
		"isolated":    formatCPUList(sortedCopy(p.Isolated)) + "\n",
		"nohz_full":   nohz,
		"kernel_max":  "8191\n",
		"smt/active":  map[bool]string{true: "1\n", false: "0\n"}[p.ThreadsPerCore > 1],
		"smt/control": map[bool]string{true: "on\n", false: "notsupported\n"}[p.ThreadsPerCore > 1],
	}
	if p.Kernel == "6.12" {
		attrs["enabled"] = all
	}
	if err := w.files(dir, attrs); err != nil {
		return err
	}
	for c := 0; c < p.CPUs; c++ {
		cdir := filepath.Join(dir, fmt.Sprintf("cpu%d", c))
		a := map[string]string{
			"topology/thread_siblings_list": formatCPUList(p.siblings(c)) + "\n",
			"topology/core_id":              strconv.Itoa(c%p.cores()) + "\n",
			"topology/physical_package_id":  "0\n",
			"topology/core_siblings_list":   all,
		}
		// cpu0 cannot be hot-unplugged on x86: it has no online file.
		if c > 0 {
			a["online"] = "1\n"
		}
		if err := w.files(cdir, a); err != nil {
			return err
		}
	}
	return nil
}

func sortedCopy(v []int) []int {
	out := append([]int(nil), v...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

const (
	memoryBlockMB = 128
	maxBlockDirs  = 1024
)

func (w treeWriter) memory() error {
	dir := w.paths.SysPath("devices/system/memory")
	if err := w.files(dir, map[string]string{
		"block_size_bytes":   fmt.Sprintf("%x\n", memoryBlockMB<<20),
		"auto_online_blocks": "online\n",
	}); err != nil {
		return err
	}
	blocks := min((w.prof.MemoryMB+memoryBlockMB-1)/memoryBlockMB, maxBlockDirs)
	for b := 0; b < blocks; b++ {
		if err := w.files(filepath.Join(dir, fmt.Sprintf("memory%d", b)), map[string]string{
			"online": "1\n", "state": "online\n", "phys_index": fmt.Sprintf("%08x\n", b), "removable": "1\n",
		}); err != nil {
			return err
		}
	}
	// Both files are write-only in the kernel. As FIFOs the running
	// simulator sees every write, in order.
	for _, name := range []string{"soft_offline_page", "hard_offline_page"} {
		if err := mkfifo(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func (w treeWriter) machinecheck() error {
	v := w.prof.vendor()
	for c := 0; c < w.prof.CPUs; c++ {
		a := map[string]string{
			"check_interval": "300\n", "cmci_disabled": "0\n", "dont_log_ce": "0\n",
			"ignore_ce": "0\n", "monarch_timeout": "1000000\n", "print_all": "0\n",
		}
		for b := 0; b < v.banks; b++ {
			a[fmt.Sprintf("bank%d", b)] = "ffffffffffffffff\n"
		}
		if w.prof.CPU == "amd" {
			// As captured: the kernel masks GART TLB walk errors on AMD bank 4.
			a["bank4"] = "fffffffffffffbff\n"
		}
		if err := w.files(w.paths.SysPath("devices/system/machinecheck", fmt.Sprintf("machinecheck%d", c)), a); err != nil {
			return err
		}
	}
	return nil
}

func (w treeWriter) edac() error {
	p := w.prof
	mcDir := w.paths.SysPath("devices/system/edac/mc")
	if err := os.MkdirAll(mcDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", mcDir, err)
	}
	if !p.EDAC {
		return nil
	}
	size := p.dimmSizeMB()
	_, maxLocation := p.edacEntry(p.DIMMsPerController-1, p.ranks()-1)
	for mc := 0; mc < p.Controllers; mc++ {
		dir := filepath.Join(mcDir, fmt.Sprintf("mc%d", mc))
		if err := w.files(dir, map[string]string{
			"mc_name": p.mcName(mc) + "\n", "size_mb": fmt.Sprintf("%d\n", size*p.DIMMsPerController),
			"ce_count": "0\n", "ue_count": "0\n", "ce_noinfo_count": "0\n", "ue_noinfo_count": "0\n",
			"seconds_since_reset": "0\n", "max_location": strings.TrimSpace(maxLocation) + "\n",
		}); err != nil {
			return err
		}
		for d := 0; d < p.DIMMsPerController; d++ {
			for cs := 0; cs < p.ranks(); cs++ {
				entry, location := p.edacEntry(d, cs)
				// Both ranks of a DIMM carry its label, as an administrator
				// labels them (ras-mc-ctl's labels database names a DIMM by
				// each of its csrow/channel pairs), unless the profile keeps
				// the driver's own labels, one per rank.
				if err := w.files(filepath.Join(dir, entry), map[string]string{
					"dimm_label": p.entryLabel(mc, d, cs) + "\n", "dimm_location": location + "\n",
					"size": fmt.Sprintf("%d\n", size/p.ranks()), "dimm_mem_type": "Registered-DDR4\n",
					"dimm_edac_mode": "SECDED\n", "dimm_dev_type": "x4\n",
					"dimm_ce_count": "0\n", "dimm_ue_count": "0\n",
				}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (w treeWriter) proc() error {
	p := w.prof
	cmdline := "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet"
	if len(p.Isolated) > 0 {
		cmdline += " isolcpus=" + formatCPUList(sortedCopy(p.Isolated))
	}
	if !p.CEC && p.Kernel == "6.12" {
		cmdline += " ras=cec_disable"
	}
	if err := w.file(w.paths.ProcPath("cmdline"), cmdline+"\n"); err != nil {
		return err
	}
	if p.Kernel == "6.12" {
		if err := w.file(w.paths.ProcPath("sys/vm/enable_soft_offline"), "1\n"); err != nil {
			return err
		}
	}
	mi, err := renderMeminfo(p, 0)
	if err != nil {
		return err
	}
	if err := w.file(w.paths.ProcPath("meminfo"), mi); err != nil {
		return err
	}
	return w.kpageflags()
}

// kpageflags writes a sparse file, 8 bytes per PFN: the low 64 MiB is in
// use, above it every 4 MiB block starts with a free buddy head (order 10),
// the rest reads as zero flags like tail pages of free blocks.
func (w treeWriter) kpageflags() error {
	path := w.paths.ProcPath("kpageflags")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	defer f.Close()
	pages := w.prof.pages()
	if err := f.Truncate(int64(pages * 8)); err != nil {
		return fmt.Errorf("sizing %s: %w", path, err)
	}
	const usedPages, buddyOrder10 = 64 << 8, 1024
	dense := min(pages, 1<<20) // beyond 4 GiB stays all-zero and sparse
	buf := make([]byte, dense*8)
	for pfn := uint64(0); pfn < dense; pfn++ {
		var v uint64
		switch {
		case pfn < usedPages:
			v = usedPageFlag
		case pfn%buddyOrder10 == 0:
			v = kpfBuddy
		}
		binary.LittleEndian.PutUint64(buf[pfn*8:], v)
	}
	if _, err := f.WriteAt(buf, 0); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// renderMeminfo fills the captured meminfo of the profile's kernel with the
// profile's sizes, keeping the kernel's column widths.
func renderMeminfo(p Profile, corruptedKB uint64) (string, error) {
	tmpl, err := kernelFile(p.Kernel, "meminfo")
	if err != nil {
		return "", err
	}
	total := uint64(p.MemoryMB) * 1024 * 94 / 100 // the kernel reserves some
	values := map[string]uint64{
		"MemTotal": total, "MemFree": total * 94 / 100, "MemAvailable": total * 87 / 100,
		"CommitLimit": total / 2, "HardwareCorrupted": corruptedKB,
		"DirectMap2M": uint64(p.MemoryMB) * 1024,
	}
	lines := strings.SplitAfter(string(tmpl), "\n")
	for i, l := range lines {
		key, _, ok := strings.Cut(l, ":")
		v, want := values[key]
		if !ok || !want {
			continue
		}
		body := strings.TrimSuffix(l, "\n")
		width := len(body) - len(key) - 1 - len(" kB")
		lines[i] = fmt.Sprintf("%s:%*d kB\n", key, width, v)
	}
	return strings.Join(lines, ""), nil
}

const traceClocks = "[local] global counter uptime perf mono mono_raw boot tai x86-tsc\n"

func (w treeWriter) tracing() error {
	dir := w.paths.Tracing
	if err := w.files(dir, map[string]string{
		"tracing_on": "1\n", "trace_clock": traceClocks, "buffer_size_kb": "1408\n", "buffer_percent": "50\n",
	}); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "instances"), 0o755); err != nil {
		return fmt.Errorf("creating instances: %w", err)
	}
	return writeEvents(w, filepath.Join(dir, "events"), w.prof.Kernel)
}

// writeEvents writes an events/ directory as tracefs shows it, every event
// disabled: header_page, header_event, enable, and per event enable,
// format and id.
func writeEvents(w treeWriter, dir, kernel string) error {
	for _, h := range []string{"header_page", "header_event"} {
		b, err := kernelFile(kernel, "events/"+h)
		if err != nil {
			return err
		}
		if err := w.file(filepath.Join(dir, h), string(b)); err != nil {
			return err
		}
	}
	evs, err := kernelEvents(kernel)
	if err != nil {
		return err
	}
	if err := w.file(filepath.Join(dir, "enable"), "0\n"); err != nil {
		return err
	}
	for _, ev := range evs {
		edir := filepath.Join(dir, ev.system, ev.name)
		if err := w.files(edir, map[string]string{
			"enable": "0\n", "format": string(ev.raw), "id": fmt.Sprintf("%d\n", ev.format.ID), "filter": "none\n",
		}); err != nil {
			return err
		}
		if err := w.file(filepath.Join(dir, ev.system, "enable"), "0\n"); err != nil {
			return err
		}
	}
	return nil
}

func (w treeWriter) debug() error {
	p := w.prof
	if err := w.file(w.paths.DebugPath("ras/daemon_active"), "0\n"); err != nil {
		return err
	}
	if !p.CEC {
		return nil
	}
	return w.files(w.paths.DebugPath("ras/cec"), map[string]string{
		"action_threshold": fmt.Sprintf("%d\n", p.vendor().cecActions),
		"decay_interval":   "86400\n",
		"pfn":              "0\n",
		"array":            "{ n: 0\n}\n",
	})
}

// dev is empty: Debian kernels have no /dev/mcelog.
func (w treeWriter) dev() error {
	if err := os.MkdirAll(w.paths.Dev, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", w.paths.Dev, err)
	}
	return nil
}
