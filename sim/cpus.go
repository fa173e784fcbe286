package sim

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// tornOnlineGrace is how long a cpuN/online file stays empty before the
// simulator takes its writer for killed. A live writer finishes in far
// less, however loaded the host; a killed one's successor (the daemon
// restarted) re-reads an empty file for ~2.5 s (cpuoffline.readOnline).
const tornOnlineGrace = time.Second

// syncCPUs follows writes to cpuN/online and rewrites the online and
// offline lists as the kernel keeps them. cpu0 has no online file and is
// always online. Caller holds m.mu (or is Open).
func (m *Machine) syncCPUs() {
	changed := false
	for c := 1; c < m.prof.CPUs; c++ {
		path := m.paths.SysPath("devices/system/cpu", fmt.Sprintf("cpu%d", c), "online")
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if len(b) == 0 {
			// Our sysfs is a plain file: a writer killed between its
			// O_TRUNC and its write leaves it empty, which a kernel never
			// shows (the write did not happen). Empty for tornGrace of
			// wall time, it is no write in progress: show the kernel's
			// state. Counting passes was not enough: on a loaded host a
			// live writer was descheduled between the two system calls
			// for two 5 ms passes, and the restore undid its write.
			first, seen := m.tornOnline[c]
			if !seen {
				m.tornOnline[c] = time.Now()
				continue
			}
			if time.Since(first) >= m.tornGrace {
				delete(m.tornOnline, c)
				state := "0\n"
				if m.online[c] {
					state = "1\n"
				}
				_ = writeAtomic(path, []byte(state))
			}
			continue
		}
		delete(m.tornOnline, c)
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
