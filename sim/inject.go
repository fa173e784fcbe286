package sim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MCE is one machine-check record as mce-inject would log it.
type MCE struct {
	CPU       int    `json:"cpu"`
	Bank      int    `json:"bank"`
	Status    uint64 `json:"status"`
	Addr      uint64 `json:"addr,omitempty"`
	Misc      uint64 `json:"misc,omitempty"`
	Synd      uint64 `json:"synd,omitempty"`
	IPID      uint64 `json:"ipid,omitempty"`
	MCGStatus uint64 `json:"mcgstatus,omitempty"`
	// Socket is the record's socketid (the package of the bank).
	Socket int `json:"socket,omitempty"`
	// Count repeats the record; 0 means 1.
	Count int `json:"count,omitempty"`
}

// Injector is what a scenario drives: a *Machine in-process or a *Client
// over the control socket.
type Injector interface {
	InjectMCE(e MCE) error
	InjectMemoryCE(addr uint64, count, cpu int) error
	InjectMemoryCENoSyndrome(addr uint64, count, cpu int) error
	InjectMemoryUE(addr uint64, cpu int) error
	InjectCacheCE(cpu, count int) error
	InjectEDAC(mc, dimm int, ce uint64) error
	Storm(n int, pages []uint64) error
	KernelMemoryFailure(addr uint64) error
}

var _ Injector = (*Machine)(nil)

const (
	maxCount   = 10_000_000
	kworkerPID = 116 // the mce work item runs in a kworker, as captured
	tscPerNS   = 2.5 // a 2.5 GHz TSC
)

// mc_event error_type values (enum hw_event_mc_err_type).
const (
	hwEventErrCorrected   = 0
	hwEventErrUncorrected = 1
)

func checkCount(n int) (int, error) {
	if n == 0 {
		return 1, nil
	}
	if n < 0 || n > maxCount {
		return 0, fmt.Errorf("count %d: want 1..%d", n, maxCount)
	}
	return n, nil
}

// nowNS is the trace clock ("local": nanoseconds since boot), never going
// back. Caller holds m.mu.
func (m *Machine) nowNS() uint64 {
	ns := m.now().Sub(m.boot).Nanoseconds()
	if ns < 0 {
		ns = 0
	}
	if uint64(ns) < m.lastTS {
		return m.lastTS
	}
	m.lastTS = uint64(ns)
	return m.lastTS
}

// mceRecord lays out one mce:mce_record payload from the kernel's format.
func (m *Machine) mceRecord(e MCE, ts uint64) ([]byte, error) {
	v := m.prof.vendor()
	p := newPayload(m.events["mce/mce_record"].format, kworkerPID)
	set := []struct {
		name string
		v    uint64
	}{
		{"mcgcap", 0}, {"mcgstatus", e.MCGStatus}, {"status", e.Status}, {"addr", e.Addr},
		{"misc", e.Misc}, {"synd", e.Synd}, {"ipid", e.IPID}, {"ip", 0},
		{"tsc", uint64(float64(ts) * tscPerNS)}, {"walltime", uint64(m.boot.Unix()) + ts/1e9},
		{"cpu", uint64(e.CPU)}, {"cpuid", uint64(v.cpuid)}, {"apicid", 0}, {"socketid", uint64(e.Socket)},
		{"cs", 0}, {"bank", uint64(e.Bank)}, {"cpuvendor", uint64(v.cpuvendor)},
	}
	for _, f := range set {
		if err := p.set(f.name, f.v); err != nil {
			return nil, err
		}
	}
	if err := p.setIfPresent("ppin", 0); err != nil {
		return nil, err
	}
	if err := p.setIfPresent("microcode", uint64(v.microcode)); err != nil {
		return nil, err
	}
	return p.bytes(), nil
}

// mcEvent lays out one ras:mc_event payload for a memory error at addr,
// with the driver's message and detail.
func (m *Machine) mcEvent(errType int, count uint16, addr uint64, loc DIMMLocation, msg, detail string) ([]byte, error) {
	p := newPayload(m.events["ras/mc_event"].format, kworkerPID)
	// The layers as the driver's dimm_location orders them: "channel N
	// slot 0", or amd64_edac's "csrow <chip select> channel <UMC>".
	top, middle := uint64(loc.DIMM), uint64(0)
	if loc.CS >= 0 {
		top, middle = uint64(loc.CS), uint64(loc.DIMM)
	}
	ints := []struct {
		name string
		v    uint64
	}{
		{"error_type", uint64(errType)}, {"error_count", uint64(count)}, {"mc_index", uint64(loc.MC)},
		{"top_layer", top}, {"middle_layer", middle}, {"lower_layer", uint64(0xff)}, // -1: unused layer
		{"address", addr}, {"grain_bits", pageShift}, {"syndrome", 0},
	}
	for _, f := range ints {
		if err := p.set(f.name, f.v); err != nil {
			return nil, err
		}
	}
	for _, s := range []struct{ name, v string }{{"msg", msg}, {"label", loc.Label}, {"driver_detail", detail}} {
		if err := p.setString(s.name, s.v); err != nil {
			return nil, err
		}
	}
	return p.bytes(), nil
}

// InjectMCE logs e.Count machine-check records on e.CPU.
func (m *Machine) InjectMCE(e MCE) error {
	n, err := checkCount(e.Count)
	if err != nil {
		return fmt.Errorf("inject mce: %w", err)
	}
	if e.Bank < 0 || e.Bank > 63 {
		return fmt.Errorf("inject mce: bank %d outside 0..63", e.Bank)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkCPU(e.CPU); err != nil {
		return fmt.Errorf("inject mce: %w", err)
	}
	em := m.newEmitter()
	for range n {
		if err := m.emitMCE(em, e); err != nil {
			return err
		}
	}
	return em.flush()
}

func (m *Machine) emitMCE(em *emitter, e MCE) error {
	ts := m.nowNS()
	rec, err := m.mceRecord(e, ts)
	if err != nil {
		return err
	}
	return em.record("mce/mce_record", e.CPU, ts, rec)
}

// InjectMemoryCE logs count corrected DRAM errors at addr on cpu, with the
// profile's vendor values. The same errors then take the kernel's paths:
// with CEC they are consumed by it (which offlines the page at its
// action_threshold); else with EDAC one ras:mc_event with error_count =
// count is emitted for the owning DIMM and its counters grow by count.
func (m *Machine) InjectMemoryCE(addr uint64, count, cpu int) error {
	if err := m.injectMemoryCE(addr, count, cpu, false); err != nil {
		return fmt.Errorf("inject memory ce: %w", err)
	}
	return nil
}

// InjectMemoryCENoSyndrome is InjectMemoryCE on a Zen part whose UMC left
// MCA_SYND not valid: the record names the UMC but no chip select, and
// amd64_edac, unable to place the error on a rank, logs it at csrow 0 of
// the node with no address (on 6.12 at channel 0 too) and bumps that
// entry's counter.
func (m *Machine) InjectMemoryCENoSyndrome(addr uint64, count, cpu int) error {
	if !m.prof.SMCA {
		return errors.New("inject memory ce without syndrome: needs a Zen profile (smca)")
	}
	if err := m.injectMemoryCE(addr, count, cpu, true); err != nil {
		return fmt.Errorf("inject memory ce without syndrome: %w", err)
	}
	return nil
}

func (m *Machine) injectMemoryCE(addr uint64, count, cpu int, noSyndrome bool) error {
	n, err := checkCount(count)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkCPU(cpu); err != nil {
		return err
	}
	em := m.newEmitter()
	if err := m.memoryError(em, addr, n, cpu, false, noSyndrome); err != nil {
		return err
	}
	return em.flush()
}

// InjectMemoryUE logs one uncorrected DRAM error (UC, bit 61, set) at addr.
// The simulator does not poison the page itself: recovery is the daemon's
// job (hard offline).
func (m *Machine) InjectMemoryUE(addr uint64, cpu int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkCPU(cpu); err != nil {
		return fmt.Errorf("inject memory ue: %w", err)
	}
	em := m.newEmitter()
	if err := m.memoryError(em, addr, 1, cpu, true, false); err != nil {
		return fmt.Errorf("inject memory ue: %w", err)
	}
	return em.flush()
}

func (m *Machine) memoryError(em *emitter, addr uint64, n, cpu int, uncorrected, noSyndrome bool) error {
	v := m.prof.vendor()
	e := MCE{CPU: cpu, Bank: v.memBank, Status: v.memStatus, Addr: addr, Misc: v.memMisc}
	if uncorrected {
		e.Status = v.memUEStat
	}
	loc := m.prof.Locate(addr)
	m.mcaLocation(&e, loc)
	msg, detail := "memory read error", loc.driverDetail()
	if noSyndrome {
		e.Status &^= statusSyndV
		e.Synd = 0
		// amd64_edac gives neither an address nor a detail.
		loc, addr, msg, detail = m.unplaced(loc), 0, unplacedMsg, ""
	}
	ghes := m.prof.FirmwareFirst == FirmwareGHES
	// With GHES the firmware takes the machine check; the OS sees no MCA
	// record and CEC (fed by the MCA decode chain) none of the error.
	for i := 0; i < n && !ghes; i++ {
		if err := m.emitMCE(em, e); err != nil {
			return err
		}
	}
	if m.prof.CEC && !uncorrected && !m.prof.SMCA && !ghes {
		// CEC keeps what it counts; the error that reaches its threshold
		// goes on down the decode chain (cec_add_mce returns it).
		passed, err := m.cecConsume(em, addr>>pageShift, uint64(n))
		if err != nil || passed == 0 {
			return err
		}
		n = passed
	}
	if m.prof.FirmwareFirst == FirmwareEMCA {
		return m.emitExtlog(em, addr, n, uncorrected, cpu, loc)
	}
	if !m.prof.EDAC {
		return nil
	}
	errType, counter := hwEventErrCorrected, "ce"
	if uncorrected {
		errType, counter = hwEventErrUncorrected, "ue"
	}
	for left := n; left > 0; {
		c := min(left, 0xffff) // error_count is a u16
		rec, err := m.mcEvent(errType, uint16(c), addr, loc, msg, detail)
		if err != nil {
			return err
		}
		if err := em.record("ras/mc_event", cpu, m.nowNS(), rec); err != nil {
			return err
		}
		left -= c
	}
	em.edac[edacKey{loc.MC, loc.DIMM, loc.CS, counter}] += uint64(n)
	return nil
}

// CPER severities (extlog_mem_event's sev) and memory error types.
const (
	cperSevRecoverable = 0
	cperSevCorrected   = 2
	cperMemErrSingle   = 2 // single-bit ECC
	cperMemErrMulti    = 3 // multi-bit ECC
)

// emitExtlog logs n ras:extlog_mem_event records, as Intel eMCA firmware
// reports each error, with the page-exact address and the DIMM's label as
// FRU text (the EDAC label when the profile has a map, else a name from
// the interleave).
func (m *Machine) emitExtlog(em *emitter, addr uint64, n int, uncorrected bool, cpu int, loc DIMMLocation) error {
	ev, ok := m.events["ras/extlog_mem_event"]
	if !ok {
		return nil
	}
	sev, etype := uint64(cperSevCorrected), uint64(cperMemErrSingle)
	if uncorrected {
		sev, etype = cperSevRecoverable, cperMemErrMulti
	}
	fru := loc.Label
	if fru == "" {
		fru = "DIMM_" + strconv.Itoa(int((addr>>interleaveShift)%4))
	}
	for range n {
		m.extlogSeq++
		p := newPayload(ev.format, kworkerPID)
		for _, f := range []struct {
			name string
			v    uint64
		}{{"err_seq", uint64(m.extlogSeq)}, {"etype", etype}, {"sev", sev}, {"pa", addr &^ (1<<pageShift - 1)}, {"pa_mask_lsb", pageShift}} {
			if err := p.set(f.name, f.v); err != nil {
				return err
			}
		}
		if err := p.setString("fru_text", fru); err != nil {
			return err
		}
		if err := em.record("ras/extlog_mem_event", cpu, m.nowNS(), p.bytes()); err != nil {
			return err
		}
	}
	return nil
}

// unplacedMsg is amd64_edac's message for a UMC error without a valid
// MCA_SYND.
const unplacedMsg = "MCA_SYND not valid - unknown syndrome and csrow"

// unplaced is where amd64_edac logs an error it cannot place on a rank:
// chip select 0 of the node, on the record's UMC on 6.1 and on channel 0
// on 6.12 (no EDAC driver binds in the lab's guests: this is the drivers'
// source, where 6.12's per-family get_umc_err_info sets the channel only
// after the SyndV check that sends the error to be logged).
func (m *Machine) unplaced(loc DIMMLocation) DIMMLocation {
	ch := loc.DIMM
	if m.prof.Kernel != "6.1" {
		ch = 0
	}
	return DIMMLocation{MC: loc.MC, DIMM: ch, CS: 0, Label: m.prof.entryLabel(loc.MC, ch, 0)}
}

// mcaLocation puts into the record what the hardware says about where in
// memory the error is, as the EDAC map places addr (with no EDAC driver
// the map is empty and the first channel is named). Intel: one memory-
// controller bank per controller (banks 7-9 on this 10-bank model) and the
// channel in MCACOD bits 3:0. Zen: the UMC bank of the channel, its IPID,
// the node as socket, the rank's chip select in the syndrome (bits 2:0).
func (m *Machine) mcaLocation(e *MCE, loc DIMMLocation) {
	mc, ch := max(loc.MC, 0), max(loc.DIMM, 0)
	switch {
	case m.prof.SMCA:
		e.Bank = m.prof.vendor().memBank + ch%8
		e.IPID = umcIPID(ch)
		e.Socket = mc
		e.Synd = uint64(max(loc.CS, 0))
	case m.prof.CPU == "intel":
		e.Bank = m.prof.vendor().memBank + mc%3
		e.Status = e.Status&^0xf | uint64(ch&0xf)
	}
}

// cecConsume counts corrected errors per page as the kernel's CEC does and
// offlines the page when the count reaches action_threshold. It returns
// how many of the n errors CEC let through: the one that reached the
// threshold, which the kernel passes on to EDAC and the other notifiers.
func (m *Machine) cecConsume(em *emitter, pfn, n uint64) (int, error) {
	m.stats.CECConsumed += n
	if em.cecThreshold == 0 {
		t, err := readUint(m.paths.DebugPath("ras/cec/action_threshold"))
		if err != nil {
			return 0, err
		}
		em.cecThreshold = max(t, 1)
	}
	m.cec[pfn] += n
	if m.cec[pfn] < em.cecThreshold || pfn >= m.prof.pages() {
		return 0, nil
	}
	delete(m.cec, pfn)
	m.stats.CECConsumed--
	res, err := m.poison(pfn)
	if err != nil {
		return 0, err
	}
	m.offlined = append(m.offlined, OfflineRequest{Kind: "cec", Addr: pfn << pageShift, PFN: pfn, Result: res})
	return 1, nil
}

// InjectCacheCE logs count corrected cache errors (bank 1, MCACOD 0x134, a
// level-0 data read) on cpu.
func (m *Machine) InjectCacheCE(cpu, count int) error {
	return m.InjectMCE(MCE{CPU: cpu, Bank: cacheBank, Status: cacheStatus, Count: count})
}

// InjectEDAC raises one DIMM's corrected-error counters by ce without any
// tracepoint: errors the tracepoints missed.
func (m *Machine) InjectEDAC(mc, dimm int, ce uint64) error {
	if !m.prof.EDAC {
		return errors.New("inject edac: profile has no EDAC")
	}
	if mc < 0 || mc >= m.prof.Controllers || dimm < 0 || dimm >= m.prof.DIMMsPerController {
		return fmt.Errorf("inject edac: no mc%d/dimm%d (%d controllers x %d dimms)", mc, dimm, m.prof.Controllers, m.prof.DIMMsPerController)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// On a per-rank layout, the DIMM's first rank.
	return m.bumpEDAC(mc, dimm, 0, "ce", ce)
}

// bumpEDAC adds n to a DIMM's (or its rank cs's) dimm_<kind>_count and its
// controller's <kind>_count, reading the files so outside edits are kept.
func (m *Machine) bumpEDAC(mc, dimm, cs int, kind string, n uint64) error {
	mcDir := m.paths.SysPath("devices/system/edac/mc", fmt.Sprintf("mc%d", mc))
	entry, _ := m.prof.edacEntry(dimm, max(cs, 0))
	for _, p := range []string{
		filepath.Join(mcDir, entry, "dimm_"+kind+"_count"),
		filepath.Join(mcDir, kind+"_count"),
	} {
		cur, err := readUint(p)
		if err != nil {
			return err
		}
		if err := writeAtomic(p, []byte(strconv.FormatUint(cur+n, 10)+"\n")); err != nil {
			return err
		}
	}
	return nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 64)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return v, nil
}

// Storm injects n corrected memory errors as fast as possible, round-robin
// over pages (physical addresses) and over the online CPUs, each taking the
// same paths as InjectMemoryCE with a count of 1. Records are packed many
// to a page write.
func (m *Machine) Storm(n int, pages []uint64) error {
	if n < 1 || n > maxCount*10 {
		return fmt.Errorf("storm: count %d: want 1..%d", n, maxCount*10)
	}
	if len(pages) == 0 {
		return errors.New("storm: no pages")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cpus := m.onlineCPUs()
	em := m.newEmitter()
	for i := range n {
		if err := m.memoryError(em, pages[i%len(pages)], 1, cpus[i%len(cpus)], false, false); err != nil {
			return fmt.Errorf("storm: %w", err)
		}
		// The kernel carries out a soft offline while errors keep coming;
		// Serve cannot while the storm holds the lock. Paced by the
		// reader, a storm lasts seconds on a loaded host, longer than the
		// daemon re-reads kpageflags before calling the write failed.
		if i%stormDrainEvery == stormDrainEvery-1 {
			if err := m.drainOfflines(); err != nil {
				return fmt.Errorf("storm: %w", err)
			}
		}
	}
	return em.flush()
}

// stormDrainEvery is how many storm errors go by between two looks at the
// offline files.
const stormDrainEvery = 256
