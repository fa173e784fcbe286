package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func fourCPUs() Machine {
	return Machine{
		PresentCPUs:  4,
		Online:       map[int]bool{0: true, 1: true, 2: true, 3: true},
		NoOnlineFile: map[int]bool{},
		Isolated:     map[int]bool{},
	}
}

func TestCheckCPU(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		config  func(*Config)
		machine func(m *Machine)
		cpus    []int
		want    []string // budgets named, in order
		details []string // substrings of the details
	}{
		{name: "allowed", cpus: []int{3}},
		{
			name: "CPU 2 offlined a minute ago, CPU 3 requested",
			machine: func(m *Machine) {
				m.Online[2] = false
				m.LastCPUOffline = now.Add(-time.Minute)
			},
			cpus: []int{3},
			want: []string{"min_online_cpu_fraction", "cpu_offline_interval"},
			details: []string{
				"min_online_cpu_fraction: 2 CPUs would stay online, need ceil(0.75 × 4) = 3",
				"cpu_offline_interval: last CPU offlined 1m ago, need 1h",
			},
		},
		{name: "interval passed", machine: func(m *Machine) { m.LastCPUOffline = now.Add(-time.Hour) }, cpus: []int{3}},
		{name: "interval disabled", config: func(c *Config) { c.Budgets.CPUOfflineInterval = 0 },
			machine: func(m *Machine) { m.LastCPUOffline = now.Add(-time.Second) }, cpus: []int{3}},
		{name: "CPU 0", cpus: []int{0}, want: []string{"deny.cpus"}, details: []string{"deny.cpus: CPU 0 is never offlined"}},
		{name: "CPU 0 even when deny-list omits it", config: func(c *Config) { c.Deny.CPUs = nil },
			cpus: []int{0}, want: []string{"deny.cpus"}},
		{name: "operator deny-list", config: func(c *Config) { c.Deny.CPUs = []int{0, 3} },
			cpus: []int{3}, want: []string{"deny.cpus"}, details: []string{"CPU 3 is on the deny-list"}},
		{name: "no online file", machine: func(m *Machine) { m.NoOnlineFile[1] = true; delete(m.Online, 1) },
			cpus: []int{1}, want: []string{"no-online-file"}},
		{name: "isolated", machine: func(m *Machine) { m.Isolated[3] = true },
			cpus: []int{3}, want: []string{"isolated"}, details: []string{"isolated: CPU 3 is in isolcpus/nohz_full"}},
		{
			name:   "sibling set counts as one action but all its CPUs leave",
			config: func(c *Config) { c.Budgets.MinOnlineCPUFraction = 0 },
			machine: func(m *Machine) {
				m.PresentCPUs = 3
				delete(m.Online, 3)
			},
			cpus: []int{1, 2, 2},
			want: []string{"min_online_cpus"}, details: []string{"min_online_cpus: 1 CPUs would stay online, need 2"},
		},
		{
			name: "an already offline CPU does not reduce the online count",
			machine: func(m *Machine) {
				m.PresentCPUs = 8
				m.Online[4], m.Online[5], m.Online[6], m.Online[7] = true, true, true, false
			},
			cpus: []int{6, 7},
		},
		{
			name: "CPUs without an online file count as online",
			machine: func(m *Machine) {
				delete(m.Online, 0)
				m.NoOnlineFile[0] = true
			},
			cpus: []int{3},
		},
		{name: "nothing requested", cpus: nil, want: []string{"request"}},
		{
			name: "every violation at once",
			config: func(c *Config) {
				c.Deny.CPUs = []int{1}
			},
			machine: func(m *Machine) {
				m.Isolated[1] = true
				m.LastCPUOffline = now.Add(-10 * time.Minute)
			},
			cpus:    []int{0, 1},
			want:    []string{"deny.cpus", "deny.cpus", "isolated", "min_online_cpu_fraction", "cpu_offline_interval"},
			details: []string{"cpu_offline_interval: last CPU offlined 10m ago, need 1h"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			if tt.config != nil {
				tt.config(cfg)
			}
			m := fourCPUs()
			if tt.machine != nil {
				tt.machine(&m)
			}
			v := cfg.CheckCPU(m, tt.cpus, now)
			requireViolations(t, v, tt.want, tt.details)
		})
	}
}

func TestCheckPage(t *testing.T) {
	const gib = 1 << 18 // pages
	base := Machine{TotalPages: 4 * gib, RetiredPerDIMM: map[string]int{"A1": 63, "B1": 64}}
	const limit = 1048 // floor(0.1% of 4 GiB in pages)
	tests := []struct {
		name    string
		config  func(*Config)
		machine func(*Machine)
		pfn     uint64
		dimm    string
		want    []string
		details []string
	}{
		{name: "allowed", pfn: 0x10, dimm: "A1"},
		{name: "unknown DIMM skips the per-DIMM budget", pfn: 0x10},
		{name: "DIMM full", pfn: 0x10, dimm: "B1", want: []string{"max_pages_per_dimm"},
			details: []string{"max_pages_per_dimm: 64 pages already retired on DIMM B1, limit 64"}},
		{name: "one page below the RAM limit", machine: func(m *Machine) { m.RetiredPages = limit - 1 }, pfn: 1},
		{name: "RAM limit reached", machine: func(m *Machine) { m.RetiredPages = limit }, pfn: 1,
			want: []string{"max_ram_retired_percent"}, details: []string{"1048 of 1048576 pages already retired, limit 1048 (0.1%)"}},
		{name: "total RAM unknown", machine: func(m *Machine) { m.TotalPages = 0 }, pfn: 1,
			want: []string{"max_ram_retired_percent"}, details: []string{"total RAM unknown"}},
		{name: "deny-listed page", config: func(c *Config) { c.Deny.Pages = []uint64{0x2d94} }, pfn: 0x2d94,
			want: []string{"deny.pages"}, details: []string{"deny.pages: page 0x2d94 is on the deny-list"}},
		{name: "all at once", config: func(c *Config) { c.Deny.Pages = []uint64{7} },
			machine: func(m *Machine) { m.RetiredPages = limit + 5 }, pfn: 7, dimm: "B1",
			want: []string{"deny.pages", "max_ram_retired_percent", "max_pages_per_dimm"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			if tt.config != nil {
				tt.config(cfg)
			}
			m := base
			if tt.machine != nil {
				tt.machine(&m)
			}
			requireViolations(t, cfg.CheckPage(m, tt.pfn, tt.dimm), tt.want, tt.details)
		})
	}
}

func requireViolations(t *testing.T, got []Violation, budgets, details []string) {
	t.Helper()
	names := make([]string, 0, len(got))
	all := ""
	for _, v := range got {
		names = append(names, v.Budget)
		require.Contains(t, v.Detail, v.Budget+": ", "a detail starts with its budget name")
		all += v.Detail + "\n"
	}
	if len(budgets) == 0 {
		require.Empty(t, got)
		return
	}
	require.Equal(t, budgets, names)
	for _, d := range details {
		require.Contains(t, all, d)
	}
}
