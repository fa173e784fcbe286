package cpuoffline

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MaxCPU bounds CPU numbers accepted from a cpulist. The kernel's NR_CPUS
// tops out at 8192 on x86; the extra headroom keeps a corrupt or hostile
// list from making us allocate gigabytes.
const MaxCPU = 1 << 16

// ParseCPUList parses the kernel's cpulist format ("0-3,5", "0-7:2/4").
// An empty string and "(null)" (what nohz_full shows when unset) mean no
// CPUs. The result is sorted and free of duplicates.
func ParseCPUList(s string) ([]int, error) {
	return parseCPUList(s, -1)
}

// parseCPUList also resolves the kernel command line's "N" (the last CPU)
// when last >= 0.
func parseCPUList(s string, last int) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "(null)" {
		return nil, nil
	}
	seen := make(map[int]bool)
	for _, region := range strings.Split(s, ",") {
		if err := addRegion(seen, region, last); err != nil {
			return nil, fmt.Errorf("cpulist %q: %w", s, err)
		}
	}
	cpus := make([]int, 0, len(seen))
	for c := range seen {
		cpus = append(cpus, c)
	}
	sort.Ints(cpus)
	return cpus, nil
}

// addRegion adds one "a", "a-b" or "a-b:used/group" region to set.
func addRegion(set map[int]bool, region string, last int) error {
	if region == "" {
		return fmt.Errorf("empty region")
	}
	rangePart, groupPart, hasGroup := strings.Cut(region, ":")
	loStr, hiStr, isRange := strings.Cut(rangePart, "-")
	lo, err := cpuNumber(loStr, last)
	if err != nil {
		return err
	}
	hi := lo
	if isRange {
		if hi, err = cpuNumber(hiStr, last); err != nil {
			return err
		}
	}
	if hi < lo {
		return fmt.Errorf("region %q: end before start", region)
	}
	used, group := 1, 1
	if hasGroup {
		if !isRange {
			return fmt.Errorf("region %q: a group needs a range", region)
		}
		usedStr, groupStr, ok := strings.Cut(groupPart, "/")
		if !ok {
			return fmt.Errorf("region %q: group must be used/size", region)
		}
		if used, err = smallNumber(usedStr); err != nil {
			return fmt.Errorf("region %q: %w", region, err)
		}
		if group, err = smallNumber(groupStr); err != nil {
			return fmt.Errorf("region %q: %w", region, err)
		}
		if group == 0 || used == 0 || used > group {
			return fmt.Errorf("region %q: want 0 < used <= group size", region)
		}
	}
	for c := lo; c <= hi; c++ {
		if (c-lo)%group < used {
			set[c] = true
		}
	}
	return nil
}

func cpuNumber(s string, last int) (int, error) {
	if s == "N" && last >= 0 {
		return last, nil
	}
	return smallNumber(s)
}

// smallNumber accepts only plain decimal digits up to MaxCPU.
func smallNumber(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("missing number")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > MaxCPU {
		return 0, fmt.Errorf("number %q out of range (max %d)", s, MaxCPU)
	}
	return n, nil
}

// FormatCPUList renders sorted CPUs in the kernel's compact form ("0-3,5").
func FormatCPUList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}
