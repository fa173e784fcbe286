// Package mce turns the kernel's mce:mce_record tracepoint into fault.Events:
// it reads the record through the running kernel's format file, decodes the
// MCA bank registers (status, misc, addr, ipid) for Intel, legacy AMD and
// AMD Scalable MCA, and fills the normalized event. It knows nothing of the
// policy or the daemon.
package mce

import (
	"errors"
	"fmt"

	"github.com/selfprotect/selfprotect/tracefs"
)

// EventName is the tracepoint this package decodes (system "mce").
const EventName = "mce_record"

// ErrNotMCERecord is returned when FromTrace is handed a record of another
// event: the dispatcher routed it to the wrong decoder.
var ErrNotMCERecord = errors.New("not an mce_record event")

// Record is one struct mce as the tracepoint logs it. Field names follow the
// kernel's; PPIN and Microcode exist from 6.12 on and are zero before.
type Record struct {
	MCGCap, MCGStatus, Status, Addr, Misc, Synd, IPID, IP, TSC, PPIN, Walltime uint64
	CPU, CPUID, APICID, SocketID                                               uint32
	CS, Bank, CPUVendor                                                        uint8
	Microcode                                                                  uint32
}

// FromTrace reads an mce_record by field name through the record's own
// format, so the 6.1 and 6.12 layouts (and any later one that keeps the
// names) decode alike. Every field but ppin and microcode is mandatory: a
// kernel that drops one changed the ABI, and an error naming the field is
// better than decoding zeros. ppin and microcode, added in 6.12, read as
// zero when the format lacks them.
func FromTrace(r *tracefs.Record) (Record, error) {
	if r == nil || r.Format == nil {
		return Record{}, fmt.Errorf("decoding mce_record: record without format")
	}
	if r.Format.Name != EventName {
		return Record{}, fmt.Errorf("decoding %s:%s: %w", r.Format.System, r.Format.Name, ErrNotMCERecord)
	}
	fr := fieldReader{rec: r}
	out := Record{
		MCGCap:    fr.uint("mcgcap"),
		MCGStatus: fr.uint("mcgstatus"),
		Status:    fr.uint("status"),
		Addr:      fr.uint("addr"),
		Misc:      fr.uint("misc"),
		Synd:      fr.uint("synd"),
		IPID:      fr.uint("ipid"),
		IP:        fr.uint("ip"),
		TSC:       fr.uint("tsc"),
		PPIN:      fr.optional("ppin"),
		Walltime:  fr.uint("walltime"),
		CPU:       uint32(fr.uint("cpu")),
		CPUID:     uint32(fr.uint("cpuid")),
		APICID:    uint32(fr.uint("apicid")),
		SocketID:  uint32(fr.uint("socketid")),
		CS:        uint8(fr.uint("cs")),
		Bank:      uint8(fr.uint("bank")),
		CPUVendor: uint8(fr.uint("cpuvendor")),
		Microcode: uint32(fr.optional("microcode")),
	}
	if fr.err != nil {
		return Record{}, fr.err
	}
	return out, nil
}

// fieldReader reads fields in turn and keeps the first error, so that
// FromTrace reads as a list of fields rather than a ladder of checks.
type fieldReader struct {
	rec *tracefs.Record
	err error
}

func (fr *fieldReader) uint(name string) uint64 {
	if fr.err != nil {
		return 0
	}
	v, err := fr.rec.Uint(name)
	if err != nil {
		fr.err = fmt.Errorf("decoding mce_record field %q: %w", name, err)
		return 0
	}
	return v
}

// optional reads a field that older kernels lack: absent is zero, but a
// field that is declared and cannot be read (record too short) is still an
// error. Has is asked first so the common 6.1 case builds no error value.
func (fr *fieldReader) optional(name string) uint64 {
	if !fr.rec.Format.Has(name) {
		return 0
	}
	return fr.uint(name)
}
