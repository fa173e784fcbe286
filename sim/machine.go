package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/selfprotect/selfprotect/kpath"
)

// ErrCPUOffline is returned when an injection names a CPU that is offline:
// an offline CPU logs no machine checks.
var ErrCPUOffline = errors.New("cpu is offline")

// ErrNoSuchCPU is returned for a CPU number the machine does not have.
var ErrNoSuchCPU = errors.New("no such cpu")

// Machine is a simulated machine rooted at a directory. Its methods are
// safe for concurrent use.
type Machine struct {
	dir    string
	paths  kpath.Paths
	prof   Profile
	boot   time.Time
	events map[string]eventFormat // "mce/mce_record"

	mu        sync.Mutex
	now       func() time.Time
	lastTS    uint64
	extlogSeq uint32 // err_seq of the last extlog_mem_event
	instances map[string]*instance
	soft      *offlineFIFO
	hard      *offlineFIFO
	offlined  []OfflineRequest
	failNext  int
	refused   map[uint64]bool
	corrupted uint64 // kB, as HardwareCorrupted
	online    []bool
	// tornOnline is when a sync first found a cpuN/online file empty (a
	// writer between truncating and writing it, or killed there), and
	// tornGrace how long it must stay empty before it counts as killed.
	tornOnline map[int]time.Time
	tornGrace  time.Duration
	cec        map[uint64]uint64 // PFN -> corrected errors the CEC holds
	stats      Stats
}

// Stats counts what the simulator did, for assertions and for `inject`.
type Stats struct {
	// Records is the number of records written into instance buffers,
	// counting each instance that recorded it.
	Records uint64 `json:"records"`
	Pages   uint64 `json:"pages"`
	// LostToDisabledTracing counts records no instance recorded: none
	// exists, tracing_on is 0 or the event is disabled. The kernel keeps
	// no such count; the daemon has to notice on its own.
	LostToDisabledTracing uint64 `json:"lost_to_disabled_tracing"`
	// Overrun counts records dropped because a per-CPU FIFO stayed full
	// (no reader); it is also shown in that CPU's stats file.
	Overrun uint64 `json:"overrun"`
	// CECConsumed counts corrected DRAM errors the simulated CEC swallowed
	// before EDAC saw them.
	CECConsumed uint64 `json:"cec_consumed"`
}

// Open attaches to a tree written by Build (possibly by another process).
func Open(dir string) (*Machine, error) {
	b, err := os.ReadFile(filepath.Join(stateDir(dir), "profile.json"))
	if err != nil {
		return nil, fmt.Errorf("opening simulator %s: %w", dir, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decoding %s/.sim/profile.json: %w", dir, err)
	}
	prof, err := st.Profile.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("simulator %s: %w", dir, err)
	}
	evs, err := kernelEvents(prof.Kernel)
	if err != nil {
		return nil, err
	}
	m := &Machine{
		dir: dir, paths: kpath.Under(dir), prof: prof, boot: time.Unix(0, st.BootUnixNano),
		events: map[string]eventFormat{}, now: time.Now,
		instances: map[string]*instance{}, refused: map[uint64]bool{}, cec: map[uint64]uint64{},
		online: make([]bool, prof.CPUs), tornOnline: map[int]time.Time{}, tornGrace: tornOnlineGrace,
	}
	for _, ev := range evs {
		m.events[ev.system+"/"+ev.name] = ev
	}
	for i := range m.online {
		m.online[i] = true
	}
	if m.corrupted, err = readHardwareCorrupted(m.paths.ProcPath("meminfo")); err != nil {
		return nil, err
	}
	mem := m.paths.SysPath("devices/system/memory")
	if m.soft, err = openOfflineFIFO("soft", filepath.Join(mem, "soft_offline_page")); err != nil {
		return nil, err
	}
	if m.hard, err = openOfflineFIFO("hard", filepath.Join(mem, "hard_offline_page")); err != nil {
		m.soft.close()
		return nil, err
	}
	m.syncCPUs()
	return m, nil
}

// Dir is the root of the tree; kpath.Under(m.Dir()) are the daemon's paths.
func (m *Machine) Dir() string { return m.dir }

// Paths are the kernel paths of the tree.
func (m *Machine) Paths() kpath.Paths { return m.paths }

// Profile is the machine's profile with defaults filled in.
func (m *Machine) Profile() Profile { return m.prof }

// SetClock replaces the wall clock that timestamps records (tests).
func (m *Machine) SetClock(now func() time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = now
}

// Close releases the FIFOs and instance buffers the machine holds open.
func (m *Machine) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, in := range m.instances {
		in.close()
		delete(m.instances, name)
	}
	m.soft.close()
	m.hard.close()
	return nil
}

// Stats returns a copy of the simulator's counters.
func (m *Machine) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

const servePoll = 5 * time.Millisecond

// Serve runs the parts of the fake kernel that react to the daemon (see the
// package comment) and the control socket, until ctx ends. It returns nil
// on cancellation.
func (m *Machine) Serve(ctx context.Context) error {
	ln, err := m.listen()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { m.serveControl(ctx, ln) })
	defer wg.Wait()
	tick := time.NewTicker(servePoll)
	defer tick.Stop()
	for {
		if err := m.Sync(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Sync does one pass of what Serve does periodically: populate new
// instances and forget removed ones, propagate writes to aggregate enable
// files, consume offline requests and follow CPU online files. Tests call
// it directly for deterministic steps.
func (m *Machine) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.syncInstances(); err != nil {
		return err
	}
	if err := m.drainOfflines(); err != nil {
		return err
	}
	m.syncCPUs()
	return nil
}
