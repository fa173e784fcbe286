package sim

import (
	"fmt"
	"os"
	"strings"
)

// syncCPUs follows writes to cpuN/online and rewrites the online and
// offline lists as the kernel keeps them. cpu0 has no online file and is
// always online. Caller holds m.mu (or is Open).
func (m *Machine) syncCPUs() {
	changed := false
	for c := 1; c < m.prof.CPUs; c++ {
		b, err := os.ReadFile(m.paths.SysPath("devices/system/cpu", fmt.Sprintf("cpu%d", c), "online"))
		if err != nil {
			continue
		}
		on := !strings.HasPrefix(strings.TrimSpace(string(b)), "0")
		if on != m.online[c] {
			m.online[c] = on
			changed = true
		}
	}
	if !changed {
		return
	}
	var on, off []int
	for c, ok := range m.online {
		if ok {
			on = append(on, c)
		} else {
			off = append(off, c)
		}
	}
	dir := m.paths.SysPath("devices/system/cpu")
	_ = writeAtomic(dir+"/online", []byte(formatCPUList(on)+"\n"))
	_ = writeAtomic(dir+"/offline", []byte(formatCPUList(off)+"\n"))
}

// onlineCPUs lists the CPUs online now. Caller holds m.mu.
func (m *Machine) onlineCPUs() []int {
	var out []int
	for c, ok := range m.online {
		if ok {
			out = append(out, c)
		}
	}
	return out
}

func (m *Machine) checkCPU(cpu int) error {
	if cpu < 0 || cpu >= m.prof.CPUs {
		return fmt.Errorf("cpu %d: %w (machine has %d)", cpu, ErrNoSuchCPU, m.prof.CPUs)
	}
	if !m.online[cpu] {
		return fmt.Errorf("cpu %d: %w", cpu, ErrCPUOffline)
	}
	return nil
}
