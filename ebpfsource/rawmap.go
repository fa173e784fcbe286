package ebpfsource

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The sweep reads the probes' counters and aggregation maps with raw
// bpf(2) calls into buffers it keeps, not through cilium's Map methods.
// cilium enters the system call through the runtime's syscall path, which
// wakes the runtime's sysmon thread when it sleeps and lets sysmon hand
// the P to another thread when the call outlasts its 20 µs poll: measured
// in the guest, a storming eBPF daemon's sysmon woke ~50 times a second
// for ~1 sweep a second. A map lookup never blocks, so the runtime need
// not know (the same reasoning as tracefs's raw sweep). cilium also
// allocated a value per lookup and a map per sweep; these buffers are
// reused, so a sweep allocates only the events it sends.

// bpf(2) commands (uapi/linux/bpf.h).
const (
	bpfMapLookupElem  = 1
	bpfMapGetNextKey  = 4
	attrMapElemSize   = unsafe.Sizeof(mapElemAttr{})
	maxIterationSlack = 64
)

// mapElemAttr is union bpf_attr's BPF_MAP_*_ELEM member. Pointer fields
// keep what they point to alive and visible to the garbage collector.
type mapElemAttr struct {
	mapFD uint32
	_     uint32
	key   unsafe.Pointer
	value unsafe.Pointer // next_key for BPF_MAP_GET_NEXT_KEY
	flags uint64
}

func bpfRaw(cmd uintptr, attr *mapElemAttr) syscall.Errno {
	_, _, errno := syscall.RawSyscall(unix.SYS_BPF, cmd, uintptr(unsafe.Pointer(attr)), attrMapElemSize)
	runtime.KeepAlive(attr)
	return errno
}

// rawMap is one map's descriptor and the buffers its reads reuse.
type rawMap struct {
	fd         uint32
	maxEntries uint32
	key, next  []byte
	value      []byte
}

func newRawMap(m *ebpf.Map, perCPU int) (*rawMap, error) {
	if m.FD() < 0 {
		return nil, errors.New("map has no descriptor")
	}
	vs := int(m.ValueSize())
	if perCPU > 0 {
		// Per-CPU values come as one 8-byte-aligned slot per possible CPU.
		vs = (vs + 7) &^ 7 * perCPU
	}
	return &rawMap{
		fd: uint32(m.FD()), maxEntries: m.MaxEntries(),
		key: make([]byte, m.KeySize()), next: make([]byte, m.KeySize()), value: make([]byte, vs),
	}, nil
}

// lookup reads key's value into r.value.
func (r *rawMap) lookup(key []byte) error {
	attr := mapElemAttr{mapFD: r.fd, key: unsafe.Pointer(&key[0]), value: unsafe.Pointer(&r.value[0])}
	if errno := bpfRaw(bpfMapLookupElem, &attr); errno != 0 {
		return errno
	}
	return nil
}

// each calls fn with every key and its value (in r's buffers, valid until
// fn returns) until fn returns false. A hash map's walk restarts when the
// key it stands on is deleted meanwhile; the probes never delete, and the
// walk is bounded anyway.
func (r *rawMap) each(fn func(key, value []byte) bool) error {
	var prev unsafe.Pointer // nil: the first key
	for range int(r.maxEntries) + maxIterationSlack {
		attr := mapElemAttr{mapFD: r.fd, key: prev, value: unsafe.Pointer(&r.next[0])}
		if errno := bpfRaw(bpfMapGetNextKey, &attr); errno != 0 {
			if errno == unix.ENOENT {
				return nil // walked them all
			}
			return fmt.Errorf("next key: %w", errno)
		}
		r.key, r.next = r.next, r.key
		prev = unsafe.Pointer(&r.key[0])
		switch err := r.lookup(r.key); {
		case errors.Is(err, unix.ENOENT):
			continue // deleted since: nothing to report
		case err != nil:
			return fmt.Errorf("lookup: %w", err)
		}
		if !fn(r.key, r.value) {
			return nil
		}
	}
	return fmt.Errorf("more than %d keys in a map of %d entries: the walk keeps restarting", int(r.maxEntries)+maxIterationSlack, r.maxEntries)
}

// statsSize is struct sp_stats; statsSlot is its per-CPU slot.
const (
	statsSize = int(unsafe.Sizeof(probesSpStats{}))
	statsSlot = (statsSize + 7) &^ 7
)

// rawSet is the sweep's view of the maps (Run's goroutine only).
type rawSet struct {
	stats *rawMap
	agg   map[uint32]*rawMap
}

// rawMaps opens the raw view of the counters and every attached probe's
// aggregation map on first use.
func (s *Source) rawMaps() (*rawSet, error) {
	if s.raw != nil {
		return s.raw, nil
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("counting possible CPUs: %w", err)
	}
	if s.stats == nil {
		return nil, errors.New("no probe counters map")
	}
	if int(s.stats.ValueSize()) != statsSize {
		return nil, fmt.Errorf("probe counters of %d bytes, want %d", s.stats.ValueSize(), statsSize)
	}
	st, err := newRawMap(s.stats, cpus)
	if err != nil {
		return nil, fmt.Errorf("probe counters: %w", err)
	}
	raw := &rawSet{stats: st, agg: map[uint32]*rawMap{}}
	for _, p := range s.attached {
		m := s.aggMaps[p.kind]
		if m == nil {
			return nil, fmt.Errorf("%s: no aggregation map", p.Key())
		}
		if m.KeySize() != uint32(unsafe.Sizeof(probesSpKey{})) || m.ValueSize() < aggHeadSize {
			return nil, fmt.Errorf("%s: aggregation map of %d-byte keys and %d-byte values, want %d and at least %d",
				p.Key(), m.KeySize(), m.ValueSize(), unsafe.Sizeof(probesSpKey{}), aggHeadSize)
		}
		if raw.agg[p.kind], err = newRawMap(m, 0); err != nil {
			return nil, fmt.Errorf("%s: %w", p.aggMap, err)
		}
	}
	s.raw = raw
	return raw, nil
}
