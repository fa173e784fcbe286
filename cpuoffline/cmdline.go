package cpuoffline

import (
	"fmt"
	"strings"
)

// isIsolcpusFlag reports whether word is one of the flags isolcpus= accepts
// before its cpulist ("isolcpus=domain,managed_irq,2-3"). A flag-less list
// means "domain".
func isIsolcpusFlag(word string) bool {
	switch word {
	case "nohz", "domain", "managed_irq":
		return true
	}
	return false
}

// CmdlineIsolation is what the kernel command line says about isolated CPUs.
type CmdlineIsolation struct {
	Isolcpus      []int
	IsolcpusFlags []string
	NohzFull      []int
}

// ParseCmdline extracts isolcpus= and nohz_full= from a kernel command line.
// lastCPU resolves the "N" shorthand (the highest possible CPU); pass -1
// when unknown and "N" becomes an error. Repeated parameters are merged:
// for a safety rule, over-counting an isolated CPU is the harmless mistake.
func ParseCmdline(cmdline string, lastCPU int) (CmdlineIsolation, error) {
	var out CmdlineIsolation
	for _, word := range strings.Fields(cmdline) {
		key, val, ok := strings.Cut(word, "=")
		if !ok {
			continue
		}
		val = strings.Trim(val, `"`)
		switch key {
		case "isolcpus":
			flags, list := splitIsolcpus(val)
			cpus, err := parseCPUList(list, lastCPU)
			if err != nil {
				return out, fmt.Errorf("isolcpus=%s: %w", val, err)
			}
			out.Isolcpus = mergeSorted(out.Isolcpus, cpus)
			out.IsolcpusFlags = append(out.IsolcpusFlags, flags...)
		case "nohz_full":
			cpus, err := parseCPUList(val, lastCPU)
			if err != nil {
				return out, fmt.Errorf("nohz_full=%s: %w", val, err)
			}
			out.NohzFull = mergeSorted(out.NohzFull, cpus)
		}
	}
	return out, nil
}

// splitIsolcpus separates the leading flag words from the cpulist, which
// itself may contain commas.
func splitIsolcpus(val string) (flags []string, list string) {
	parts := strings.Split(val, ",")
	i := 0
	for i < len(parts) && isIsolcpusFlag(parts[i]) {
		flags = append(flags, parts[i])
		i++
	}
	return flags, strings.Join(parts[i:], ",")
}

// mergeSorted returns the sorted union of two sorted lists.
func mergeSorted(a, b []int) []int {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make([]int, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var v int
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			v, i = a[i], i+1
		case i == len(a) || b[j] < a[i]:
			v, j = b[j], j+1
		default:
			v, i, j = a[i], i+1, j+1
		}
		if len(out) == 0 || out[len(out)-1] != v {
			out = append(out, v)
		}
	}
	return out
}
