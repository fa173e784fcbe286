package cpuoffline

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/selfprotect/selfprotect/kpath"
)

// Topology is what the CPU budgets and safety rules need to know.
type Topology struct {
	Present  []int // sorted; includes CPUs without an online file
	Online   []int // sorted
	Offline  []int // sorted; may be empty
	Possible []int // sorted
	// Isolated is the union of sysfs isolated and nohz_full and the
	// command line's isolcpus= and nohz_full=: CPUs we must never offline.
	Isolated []int
	// NoOnlineFile marks present CPUs the kernel does not let us offline
	// (usually cpu0).
	NoOnlineFile map[int]bool
	// Siblings maps each present CPU to its SMT thread siblings, itself
	// included, sorted.
	Siblings map[int][]int
}

// IsOnline reports whether cpu is in the online list.
func (t Topology) IsOnline(cpu int) bool { return contains(t.Online, cpu) }

// IsIsolated reports whether cpu is isolated or nohz_full.
func (t Topology) IsIsolated(cpu int) bool { return contains(t.Isolated, cpu) }

func contains(sorted []int, v int) bool {
	for _, c := range sorted {
		if c == v {
			return true
		}
		if c > v {
			return false
		}
	}
	return false
}

// cpuDir is <sys>/devices/system/cpu.
func cpuDir(p kpath.Paths, elem ...string) string {
	return p.SysPath(append([]string{"devices/system/cpu"}, elem...)...)
}

// onlinePath is <sys>/devices/system/cpu/cpuN/online.
func onlinePath(p kpath.Paths, cpu int) string {
	return cpuDir(p, "cpu"+strconv.Itoa(cpu), "online")
}

// ReadPresentOnline reads only the present and online lists: what a
// budget's status needs, in two reads where ReadTopology makes two per
// CPU more (the health check runs after every isolation and every 15 s).
func ReadPresentOnline(p kpath.Paths, fsys kpath.FS) (present, online []int, err error) {
	if present, err = readCPUList(p, fsys, "present", true); err != nil {
		return nil, nil, err
	}
	if online, err = readCPUList(p, fsys, "online", true); err != nil {
		return nil, nil, err
	}
	return present, online, nil
}

// ReadTopology reads the CPU lists, per-CPU online files, SMT siblings and
// the command line's isolation parameters. present and online are required;
// the other lists and <proc>/cmdline are optional (missing means empty).
func ReadTopology(p kpath.Paths, fsys kpath.FS) (Topology, error) {
	var t Topology
	var err error
	if t.Present, err = readCPUList(p, fsys, "present", true); err != nil {
		return t, err
	}
	if t.Online, err = readCPUList(p, fsys, "online", true); err != nil {
		return t, err
	}
	if t.Offline, err = readCPUList(p, fsys, "offline", false); err != nil {
		return t, err
	}
	if t.Possible, err = readCPUList(p, fsys, "possible", false); err != nil {
		return t, err
	}
	isolated, err := readCPUList(p, fsys, "isolated", false)
	if err != nil {
		return t, err
	}
	nohz, err := readCPUList(p, fsys, "nohz_full", false)
	if err != nil {
		return t, err
	}
	cmd, err := readCmdline(p, fsys, lastCPU(t))
	if err != nil {
		return t, err
	}
	t.Isolated = mergeSorted(mergeSorted(isolated, nohz), mergeSorted(cmd.Isolcpus, cmd.NohzFull))

	t.NoOnlineFile = make(map[int]bool)
	t.Siblings = make(map[int][]int, len(t.Present))
	for _, cpu := range t.Present {
		has, err := exists(fsys, onlinePath(p, cpu))
		if err != nil {
			return t, err
		}
		if !has {
			t.NoOnlineFile[cpu] = true
		}
		if t.Siblings[cpu], err = readSiblings(p, fsys, cpu); err != nil {
			return t, err
		}
	}
	return t, nil
}

func lastCPU(t Topology) int {
	switch {
	case len(t.Possible) > 0:
		return t.Possible[len(t.Possible)-1]
	case len(t.Present) > 0:
		return t.Present[len(t.Present)-1]
	}
	return -1
}

func readCPUList(p kpath.Paths, fsys kpath.FS, name string, required bool) ([]int, error) {
	path := cpuDir(p, name)
	data, err := fsys.ReadFile(path)
	if err != nil {
		if !required && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	cpus, err := ParseCPUList(string(data))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return cpus, nil
}

func readCmdline(p kpath.Paths, fsys kpath.FS, last int) (CmdlineIsolation, error) {
	path := p.ProcPath("cmdline")
	data, err := fsys.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return CmdlineIsolation{}, nil
	}
	if err != nil {
		return CmdlineIsolation{}, fmt.Errorf("reading %s: %w", path, err)
	}
	// Kernels separate words with spaces; some tools leave NULs.
	iso, err := ParseCmdline(strings.ReplaceAll(string(data), "\x00", " "), last)
	if err != nil {
		return iso, fmt.Errorf("parsing %s: %w", path, err)
	}
	return iso, nil
}

// readSiblings falls back to the CPU alone when the topology file is
// missing (offline CPUs on older kernels, fixture trees).
func readSiblings(p kpath.Paths, fsys kpath.FS, cpu int) ([]int, error) {
	path := cpuDir(p, "cpu"+strconv.Itoa(cpu), "topology", "thread_siblings_list")
	data, err := fsys.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []int{cpu}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	sib, err := ParseCPUList(string(data))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	if !contains(sib, cpu) {
		sib = mergeSorted(sib, []int{cpu})
	}
	return sib, nil
}

func exists(fsys kpath.FS, path string) (bool, error) {
	_, err := fsys.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("checking %s: %w", path, err)
}
