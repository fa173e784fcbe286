package sim

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Outcomes of an offline request.
const (
	OfflinePoisoned        = "poisoned"         // the page now has HWPOISON
	OfflineAlreadyPoisoned = "already-poisoned" // soft: kernel returns success; hard: EHWPOISON
	OfflineRefused         = "refused"          // a failure the test asked for
	OfflineInvalid         = "invalid"          // not a number or beyond memory (EINVAL, ENXIO)
)

// OfflineRequest is one write to soft_offline_page or hard_offline_page, or
// an offline the simulated CEC did on its own (Kind "cec").
type OfflineRequest struct {
	Kind   string `json:"kind"` // "soft", "hard", "cec" or "kernel" (memory_failure on its own)
	Raw    string `json:"raw,omitempty"`
	Addr   uint64 `json:"addr"`
	PFN    uint64 `json:"pfn"`
	Result string `json:"result"`
}

// Poisoned reports whether this request left the page poisoned by itself.
func (r OfflineRequest) Poisoned() bool { return r.Result == OfflinePoisoned }

// offlineFIFO is one of the two write-only memory files, held open
// read-write and non-blocking so the simulator can drain it in Sync.
type offlineFIFO struct {
	kind    string
	path    string
	fd      int
	pending []byte
}

func openOfflineFIFO(kind, path string) (*offlineFIFO, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &offlineFIFO{kind: kind, path: path, fd: fd}, nil
}

func (f *offlineFIFO) close() {
	if f != nil && f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
}

// drain returns the requests written since the last call. A write without
// a trailing newline is taken whole once the FIFO is empty.
func (f *offlineFIFO) drain() ([]string, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(f.fd, buf)
		if n > 0 {
			f.pending = append(f.pending, buf[:n]...)
		}
		if errors.Is(err, unix.EAGAIN) || (err == nil && n == 0) {
			break
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f.path, err)
		}
	}
	var out []string
	for len(f.pending) > 0 {
		line, rest, found := bytes.Cut(f.pending, []byte("\n"))
		if s := strings.TrimSpace(string(line)); s != "" {
			out = append(out, s)
		}
		if !found {
			rest = nil
		}
		f.pending = rest
	}
	return out, nil
}

// drainOfflines applies every pending offline request. Caller holds m.mu.
func (m *Machine) drainOfflines() error {
	for _, f := range []*offlineFIFO{m.soft, m.hard} {
		reqs, err := f.drain()
		if err != nil {
			return err
		}
		for _, raw := range reqs {
			if err := m.offline(f.kind, raw); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseOfflineAddr reads the address as the kernel's kstrtoull(buf, 0):
// 0x-hex, 0-octal or decimal.
func parseOfflineAddr(raw string) (uint64, error) {
	return strconv.ParseUint(strings.TrimSpace(raw), 0, 64)
}

func (m *Machine) offline(kind, raw string) error {
	req := OfflineRequest{Kind: kind, Raw: raw}
	addr, err := parseOfflineAddr(raw)
	req.Addr, req.PFN = addr, addr>>pageShift
	switch {
	case err != nil || req.PFN >= m.prof.pages():
		req.Result = OfflineInvalid
	case m.refused[req.PFN] || m.failNext > 0:
		if !m.refused[req.PFN] {
			m.failNext--
		}
		req.Result = OfflineRefused
	default:
		if req.Result, err = m.poison(req.PFN); err != nil {
			return err
		}
		// A hard offline runs the kernel's memory-failure handler, which
		// fires ras:memory_failure_event; a soft offline does not (both
		// seen in the lab).
		if kind == "hard" && req.Result == OfflinePoisoned {
			if err := m.emitMemoryFailure(req.PFN, mfFreeBuddyPage, mfRecovered); err != nil {
				return err
			}
		}
	}
	m.offlined = append(m.offlined, req)
	return nil
}

// memory_failure_event's page type and result values used here.
const (
	mfDirtyLRUPage  = 13
	mfFreeBuddyPage = 16
	mfRecovered     = 3
)

// emitMemoryFailure logs one ras:memory_failure_event. Caller holds m.mu.
func (m *Machine) emitMemoryFailure(pfn uint64, typ, result int) error {
	ev, ok := m.events["ras/memory_failure_event"]
	if !ok {
		return nil
	}
	p := newPayload(ev.format, kworkerPID)
	for _, f := range []struct {
		name string
		v    uint64
	}{{"pfn", pfn}, {"type", uint64(typ)}, {"result", uint64(result)}} {
		if err := p.set(f.name, f.v); err != nil {
			return err
		}
	}
	em := m.newEmitter()
	if err := em.record("ras/memory_failure_event", 0, m.nowNS(), p.bytes()); err != nil {
		return err
	}
	return em.flush()
}

// KernelMemoryFailure is the kernel handling an uncorrected error on the
// page at addr by itself (its machine-check handler, or a firmware
// request): the page is poisoned, HardwareCorrupted grows and
// ras:memory_failure_event fires, with no write from anyone.
func (m *Machine) KernelMemoryFailure(addr uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	pfn := addr >> pageShift
	if pfn >= m.prof.pages() {
		return fmt.Errorf("kernel memory failure: addr %#x beyond memory", addr)
	}
	res, err := m.poison(pfn)
	if err != nil {
		return err
	}
	m.offlined = append(m.offlined, OfflineRequest{Kind: "kernel", Addr: addr, PFN: pfn, Result: res})
	return m.emitMemoryFailure(pfn, mfDirtyLRUPage, mfRecovered)
}

// poison sets HWPOISON on a page and accounts it in HardwareCorrupted.
func (m *Machine) poison(pfn uint64) (string, error) {
	flags, err := m.pageFlags(pfn)
	if err != nil {
		return "", err
	}
	if flags&kpfHWPoison != 0 {
		return OfflineAlreadyPoisoned, nil
	}
	// The frame leaves the allocator: no longer a buddy page.
	if err := m.setPageFlags(pfn, (flags|kpfHWPoison)&^kpfBuddy); err != nil {
		return "", err
	}
	m.corrupted += 4
	mi, err := renderMeminfo(m.prof, m.corrupted)
	if err != nil {
		return "", err
	}
	if err := writeAtomic(m.paths.ProcPath("meminfo"), []byte(mi)); err != nil {
		return "", err
	}
	return OfflinePoisoned, nil
}

func (m *Machine) pageFlags(pfn uint64) (uint64, error) {
	path := m.paths.ProcPath("kpageflags")
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], int64(pfn*8)); err != nil {
		return 0, fmt.Errorf("reading %s at pfn %#x: %w", path, pfn, err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func (m *Machine) setPageFlags(pfn, flags uint64) error {
	path := m.paths.ProcPath("kpageflags")
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], flags)
	if _, err := f.WriteAt(b[:], int64(pfn*8)); err != nil {
		f.Close()
		return fmt.Errorf("writing %s at pfn %#x: %w", path, pfn, err)
	}
	return f.Close()
}

func readHardwareCorrupted(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "HardwareCorrupted" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: HardwareCorrupted %q: %w", path, val, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s: no HardwareCorrupted line", path)
}

// Offlined returns every offline request seen so far, in order.
func (m *Machine) Offlined() []OfflineRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]OfflineRequest(nil), m.offlined...)
}

// FailNextOffline makes the next n offline requests fail: the page is not
// poisoned. The simulator cannot return an errno through a FIFO, so the
// writer sees success and only verification (kpageflags, meminfo) shows the
// failure. Errno injection belongs in the actuator packages' tests.
func (m *Machine) FailNextOffline(n int) error {
	if n < 0 {
		return fmt.Errorf("fail next offline: negative count %d", n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failNext = n
	return nil
}

// RefuseOffline makes every offline of the page fail, like an unmovable
// kernel page.
func (m *Machine) RefuseOffline(pfn uint64) error {
	if pfn >= m.prof.pages() {
		return fmt.Errorf("refuse offline: pfn %#x beyond memory", pfn)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refused[pfn] = true
	return nil
}
