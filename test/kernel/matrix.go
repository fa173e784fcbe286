package kernel

import (
	"fmt"
	"strings"
)

// Cell is one kernel × guest-CPU combination of the matrix.
type Cell struct {
	Series Series
	CPU    CPUModel
}

func (c Cell) String() string { return string(c.Series) + "-" + string(c.CPU) }

// AllSeries and AllCPUs span the full matrix.
var (
	AllSeries = []Series{Series61, Series612}
	AllCPUs   = []CPUModel{CPUAMD, CPUIntel}
)

// MatrixFromEnv selects cells from KERNEL (6.1, 6.12, or empty/"all") and
// CPU (amd, intel, or empty/"all"), the variables `make kernel-test` sets.
// Comma-separated lists are accepted too.
func MatrixFromEnv(getenv func(string) string) ([]Cell, error) {
	series, err := pick("KERNEL", getenv("KERNEL"), AllSeries)
	if err != nil {
		return nil, err
	}
	cpus, err := pick("CPU", getenv("CPU"), AllCPUs)
	if err != nil {
		return nil, err
	}
	var cells []Cell
	for _, s := range series {
		for _, c := range cpus {
			cells = append(cells, Cell{Series: s, CPU: c})
		}
	}
	return cells, nil
}

func pick[T ~string](name, value string, all []T) ([]T, error) {
	value = strings.TrimSpace(value)
	if value == "" || value == "all" {
		return all, nil
	}
	var out []T
	for _, v := range strings.Split(value, ",") {
		v = strings.TrimSpace(v)
		found := false
		for _, a := range all {
			if string(a) == v {
				out, found = append(out, a), true
			}
		}
		if !found {
			return nil, fmt.Errorf("%s=%q: want one of %v or all", name, v, all)
		}
	}
	return out, nil
}
