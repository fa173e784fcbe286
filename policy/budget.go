package policy

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Machine is what the budget checks need to know about the host right now.
// The daemon builds it from sysfs/procfs plus its own record of actions;
// isolations by others (kernel CEC, rasdaemon, an admin) count too.
type Machine struct {
	PresentCPUs int
	// Online holds CPUs with their online state. CPUs in NoOnlineFile are
	// counted online and present even when missing here.
	Online       map[int]bool
	NoOnlineFile map[int]bool
	Isolated     map[int]bool // isolcpus and nohz_full
	TotalPages   uint64
	RetiredPages uint64
	// RetiredPerDIMM counts retired pages per DIMM label.
	RetiredPerDIMM map[string]int
	LastCPUOffline time.Time
}

// Violation names one budget or safety rule an isolation would break.
type Violation struct {
	Budget string // the policy key or rule name, e.g. "min_online_cpu_fraction"
	Detail string // a sentence for humans, starting with the budget name
}

func violation(budget, format string, args ...any) Violation {
	return Violation{Budget: budget, Detail: budget + ": " + fmt.Sprintf(format, args...)}
}

// onlineCount counts online CPUs, CPUs without an online file included.
func (m Machine) onlineCount() int {
	n := 0
	for cpu, on := range m.Online {
		if on || m.NoOnlineFile[cpu] {
			n++
		}
	}
	for cpu := range m.NoOnlineFile {
		if _, listed := m.Online[cpu]; !listed {
			n++
		}
	}
	return n
}

func (m Machine) isOnline(cpu int) bool { return m.Online[cpu] || m.NoOnlineFile[cpu] }

// CheckCPU checks offlining cpus (one sibling set, one action) at now and
// returns every violation, nil when allowed.
func (c *Config) CheckCPU(m Machine, cpus []int, now time.Time) []Violation {
	var v []Violation
	if len(cpus) == 0 {
		return []Violation{violation("request", "no CPU to offline")}
	}
	set := append([]int(nil), cpus...)
	sort.Ints(set)
	leaving := 0
	for i, cpu := range set {
		if i > 0 && set[i-1] == cpu {
			continue
		}
		switch {
		case cpu == 0:
			v = append(v, violation("deny.cpus", "CPU 0 is never offlined"))
		case c.DeniedCPU(cpu):
			v = append(v, violation("deny.cpus", "CPU %d is on the deny-list", cpu))
		}
		if m.NoOnlineFile[cpu] && cpu != 0 {
			v = append(v, violation("no-online-file", "CPU %d has no online file: the kernel does not let it go offline", cpu))
		}
		if m.Isolated[cpu] {
			v = append(v, violation("isolated", "CPU %d is in isolcpus/nohz_full", cpu))
		}
		if m.isOnline(cpu) {
			leaving++
		}
	}

	stay := m.onlineCount() - leaving
	b := &c.Budgets
	if stay < b.MinOnlineCPUs {
		v = append(v, violation("min_online_cpus", "%d CPUs would stay online, need %d", stay, b.MinOnlineCPUs))
	}
	// The epsilon keeps 0.7 × 10 from rounding up to 8.
	need := int(math.Ceil(b.MinOnlineCPUFraction*float64(m.PresentCPUs) - 1e-9))
	if stay < need {
		v = append(v, violation("min_online_cpu_fraction", "%d CPUs would stay online, need ceil(%g × %d) = %d",
			stay, b.MinOnlineCPUFraction, m.PresentCPUs, need))
	}
	if b.CPUOfflineInterval > 0 && !m.LastCPUOffline.IsZero() {
		if ago := now.Sub(m.LastCPUOffline); ago < b.CPUOfflineInterval {
			v = append(v, violation("cpu_offline_interval", "last CPU offlined %s ago, need %s",
				formatDuration(ago.Round(time.Second)), formatDuration(b.CPUOfflineInterval)))
		}
	}
	return v
}

// CheckPage checks retiring one page; dimm is its DIMM label, "" when
// unknown (then the per-DIMM budget cannot apply). With TotalPages unknown
// (0) the RAM budget cannot be verified and the retirement is refused.
func (c *Config) CheckPage(m Machine, pfn uint64, dimm string) []Violation {
	var v []Violation
	if c.DeniedPage(pfn) {
		v = append(v, violation("deny.pages", "page %#x is on the deny-list", pfn))
	}
	b := &c.Budgets
	if m.TotalPages == 0 {
		v = append(v, violation("max_ram_retired_percent", "total RAM unknown, cannot check the %g%% limit", b.MaxRAMRetiredPercent))
	} else {
		limit := uint64(float64(m.TotalPages) * b.MaxRAMRetiredPercent / 100)
		if m.RetiredPages+1 > limit {
			v = append(v, violation("max_ram_retired_percent", "%d of %d pages already retired, limit %d (%g%%)",
				m.RetiredPages, m.TotalPages, limit, b.MaxRAMRetiredPercent))
		}
	}
	if dimm != "" && m.RetiredPerDIMM[dimm]+1 > b.MaxPagesPerDIMM {
		v = append(v, violation("max_pages_per_dimm", "%d pages already retired on DIMM %s, limit %d",
			m.RetiredPerDIMM[dimm], dimm, b.MaxPagesPerDIMM))
	}
	return v
}
