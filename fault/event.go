// Package fault holds the types every other package speaks: the normalized
// error report (Event), resource identifiers, and the case and action records
// that the policy opens and the actuators fill in. It imports nothing of ours.
package fault

import (
	"fmt"
	"strconv"
	"time"
)

// Unknown marks an integer field (CPU, socket, bank, mc, cache level, layer)
// whose value the source could not tell. Zero is a real CPU, bank and level.
const Unknown = -1

// Class says which part of the machine reported the error.
type Class uint8

const (
	ClassOther Class = iota
	ClassMemory
	ClassCache
	ClassTLB
	ClassBus
	ClassPCIe
)

var classNames = [...]string{"other", "memory", "cache", "tlb", "bus", "pcie"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// ParseClass is the inverse of Class.String.
func ParseClass(s string) (Class, error) {
	for i, n := range classNames {
		if n == s {
			return Class(i), nil
		}
	}
	return ClassOther, fmt.Errorf("unknown error class %q (want one of %v)", s, classNames)
}

// Severity orders from least to most urgent.
type Severity uint8

const (
	SeverityCorrected Severity = iota
	SeverityDeferred
	SeverityUncorrectedRecoverable
	SeverityFatal
)

var severityNames = [...]string{"corrected", "deferred", "uncorrected-recoverable", "fatal"}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", uint8(s))
}

// ParseSeverity is the inverse of Severity.String.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if n == s {
			return Severity(i), nil
		}
	}
	return SeverityCorrected, fmt.Errorf("unknown severity %q (want one of %v)", s, severityNames)
}

// Source names where an event came from. It is also the metric label.
type Source string

const (
	SourceTraceMCE Source = "tracefs:mce_record"
	SourceTraceMC  Source = "tracefs:mc_event"
	// SourceTraceExtlog is ras:extlog_mem_event (Intel eMCA firmware-first).
	SourceTraceExtlog Source = "tracefs:extlog_mem_event"
	// SourceTraceMemoryFailure is ras:memory_failure_event: not an error
	// report but the kernel's own hwpoison action on a page.
	SourceTraceMemoryFailure Source = "tracefs:memory_failure_event"
	// The same records read through the eBPF probes instead of tracefs:
	// one Source per tracepoint, so count-once and the daemon treat them
	// exactly as their tracefs twins.
	SourceEBPF              Source = "ebpf:mce_record"
	SourceEBPFMC            Source = "ebpf:mc_event"
	SourceEBPFExtlog        Source = "ebpf:extlog_mem_event"
	SourceEBPFMemoryFailure Source = "ebpf:memory_failure_event"
	SourceEDACPoll          Source = "edac-poll"
	SourceMcelog            Source = "mcelog"
	SourceSimulation        Source = "sim"
)

// ViaEBPF is the eBPF twin of a tracefs record's Source; any other Source
// becomes SourceEBPF's family name for a record kind it does not know.
func (s Source) ViaEBPF() Source {
	switch s {
	case SourceTraceMC:
		return SourceEBPFMC
	case SourceTraceExtlog:
		return SourceEBPFExtlog
	case SourceTraceMemoryFailure:
		return SourceEBPFMemoryFailure
	}
	return SourceEBPF
}

// KernelAction says the event is the kernel's own hwpoison action on a page
// (ras:memory_failure_event), not an error report.
func (s Source) KernelAction() bool {
	return s == SourceTraceMemoryFailure || s == SourceEBPFMemoryFailure
}

// Event is one normalized error report. A single kernel record may stand for
// several errors (mc_event error_count, an EDAC counter delta): Count says how
// many, and rate engines add Count, not 1.
type Event struct {
	// Received is when the daemon read the record; rate windows use it.
	Received time.Time
	// Recorded is the record's own time when it carries one (replay uses it).
	Recorded time.Time
	Source   Source

	Class    Class
	Severity Severity
	Count    uint32

	CPU    int // the record's own cpu field, never the ring buffer it came from
	Socket int
	Bank   int
	Vendor Vendor

	// CacheLevel is 0, 1 or 2 for MCACOD's L0/L1/L2, Unknown for "generic".
	CacheLevel int
	// CoreBank is true when the bank belongs to one core (its L1/L2, not a
	// shared cache or the uncore), so offlining that core can help.
	CoreBank bool

	Status, Addr, Misc, Synd, IPID uint64
	// TSC is the record's own time-stamp counter (mce_record), 0 when it
	// has none: it tells two records of the same error apart when two
	// paths deliver the same record (a hand-over between sources).
	TSC uint64

	// PhysAddr is usable only when AddrValid; AddrLSB is the lowest valid
	// address bit (12 means the address is exact to the 4 KiB page).
	PhysAddr  uint64
	AddrValid bool
	AddrLSB   uint8

	// EDAC view, when an EDAC driver reported or decoded the error.
	MC        int
	DIMMLabel string
	Layers    [3]int
	// Row is the DRAM row key decoded from the driver detail, "" if unknown.
	Row string
	// Channel is the memory channel the MCA record itself names (Intel
	// MCACOD bits 3:0, the AMD SMCA UMC instance), Unknown otherwise. With
	// Socket it locates an error when no EDAC record names the DIMM.
	Channel int
	// ChipSelect is the DRAM chip select an AMD SMCA UMC record names
	// (MCA_SYND bits 2:0, when SyndV), Unknown otherwise. The kernel's
	// amd64_edac logs the error at EDAC location (csrow ChipSelect,
	// channel Channel), and the chip selects 2n and 2n+1 are DIMM n of the
	// channel.
	ChipSelect int
	// LocatedBy says how DIMMLabel was found (one of the LocatedBy*
	// values), "" when the source itself carried it.
	LocatedBy string

	// Detail is free text for humans (decoder summary, driver detail).
	Detail string
}

// How an MCA record's DIMM was found (Event.LocatedBy).
const (
	LocatedByLayout  = "MCA location joined to the EDAC sysfs layout"
	LocatedByLearned = "MCA location joined to the label an earlier EDAC or firmware record gave it"
	// LocatedByMCA: DIMMLabel is the location itself ("socket 0 UMC 2"),
	// not a label: no EDAC driver or firmware names the slot.
	LocatedByMCA = "MCA record only (no EDAC or firmware label)"
	// LocatedByUnplaced marks an EDAC record of an error its driver could
	// not place on a rank: amd64_edac logs a Zen UMC error without a valid
	// MCA_SYND at chip select 0 of the node. DIMMLabel is that entry's
	// label, whose counter the kernel bumped, and not the error's DIMM.
	LocatedByUnplaced = "EDAC could not place the error (no syndrome): the label is the counter the kernel bumped, not the error's DIMM"
)

// Vendor of the CPU that logged an MCE.
type Vendor uint8

const (
	VendorUnknown Vendor = iota
	VendorIntel
	VendorAMD
)

func (v Vendor) String() string {
	switch v {
	case VendorIntel:
		return "intel"
	case VendorAMD:
		return "amd"
	}
	return "unknown"
}

// NewEvent returns an event with every integer identifier set to Unknown.
func NewEvent(src Source, received time.Time) Event {
	return Event{
		Received:   received,
		Source:     src,
		Count:      1,
		CPU:        Unknown,
		Socket:     Unknown,
		Bank:       Unknown,
		CacheLevel: Unknown,
		MC:         Unknown,
		Channel:    Unknown,
		ChipSelect: Unknown,
		Layers:     [3]int{Unknown, Unknown, Unknown},
	}
}

// PageSize is the base page size on x86-64; soft offline works on it.
const PageSize = 4096

// PFN is the page frame number of the event's address, valid only when
// AddrValid.
func (e *Event) PFN() uint64 { return e.PhysAddr / PageSize }

// String is a one-line summary for logs.
func (e *Event) String() string {
	// Appended, not formatted: this is each evidence's summary, made when
	// a case opens on the way to its isolation, where fmt's machinery
	// cost more than the rest of the case under emulation.
	b := make([]byte, 0, 128)
	b = append(b, e.Severity.String()...)
	b = append(b, ' ')
	b = append(b, e.Class.String()...)
	b = append(b, " x"...)
	b = strconv.AppendUint(b, uint64(e.Count), 10)
	if e.CPU != Unknown {
		b = append(b, " cpu="...)
		b = strconv.AppendInt(b, int64(e.CPU), 10)
	}
	if e.Bank != Unknown {
		b = append(b, " bank="...)
		b = strconv.AppendInt(b, int64(e.Bank), 10)
	}
	if e.AddrValid {
		b = append(b, " addr=0x"...)
		b = strconv.AppendUint(b, e.PhysAddr, 16)
	}
	if e.DIMMLabel != "" {
		b = append(b, " dimm="...)
		b = strconv.AppendQuote(b, e.DIMMLabel)
	}
	b = append(b, " src="...)
	b = append(b, e.Source...)
	return string(b)
}
