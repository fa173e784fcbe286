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
	CPU, CPUID, APICID, SocketID                                              uint32
	CS, Bank, CPUVendor                                                       uint8
	Microcode                                                                 uint32
}

// Fields a record must carry on every kernel we support; a kernel that drops
// one of them changed the ABI and we would rather fail loudly than decode
// zeros.
var (
	u64Fields = []struct {
		name string
		dst  func(*Record) *uint64
	}{
		{"mcgcap", func(r *Record) *uint64 { return &r.MCGCap }},
		{"mcgstatus", func(r *Record) *uint64 { return &r.MCGStatus }},
		{"status", func(r *Record) *uint64 { return &r.Status }},
		{"addr", func(r *Record) *uint64 { return &r.Addr }},
		{"misc", func(r *Record) *uint64 { return &r.Misc }},
		{"synd", func(r *Record) *uint64 { return &r.Synd }},
		{"ipid", func(r *Record) *uint64 { return &r.IPID }},
		{"ip", func(r *Record) *uint64 { return &r.IP }},
		{"tsc", func(r *Record) *uint64 { return &r.TSC }},
		{"walltime", func(r *Record) *uint64 { return &r.Walltime }},
	}
	u32Fields = []struct {
		name string
		dst  func(*Record) *uint32
	}{
		{"cpu", func(r *Record) *uint32 { return &r.CPU }},
		{"cpuid", func(r *Record) *uint32 { return &r.CPUID }},
		{"apicid", func(r *Record) *uint32 { return &r.APICID }},
		{"socketid", func(r *Record) *uint32 { return &r.SocketID }},
	}
	u8Fields = []struct {
		name string
		dst  func(*Record) *uint8
	}{
		{"cs", func(r *Record) *uint8 { return &r.CS }},
		{"bank", func(r *Record) *uint8 { return &r.Bank }},
		{"cpuvendor", func(r *Record) *uint8 { return &r.CPUVendor }},
	}
)

// FromTrace reads an mce_record by field name through the record's own
// format, so the 6.1 and 6.12 layouts (and any later one that keeps the
// names) decode alike. A missing mandatory field is an error naming it;
// ppin and microcode, added in 6.12, read as zero when absent.
func FromTrace(r *tracefs.Record) (Record, error) {
	var out Record
	if r == nil || r.Format == nil {
		return out, fmt.Errorf("decoding mce_record: record without format")
	}
	if r.Format.Name != EventName {
		return out, fmt.Errorf("decoding %s:%s: %w", r.Format.System, r.Format.Name, ErrNotMCERecord)
	}
	for _, f := range u64Fields {
		v, err := r.Uint(f.name)
		if err != nil {
			return Record{}, fmt.Errorf("decoding mce_record field %q: %w", f.name, err)
		}
		*f.dst(&out) = v
	}
	for _, f := range u32Fields {
		v, err := r.Uint(f.name)
		if err != nil {
			return Record{}, fmt.Errorf("decoding mce_record field %q: %w", f.name, err)
		}
		*f.dst(&out) = uint32(v)
	}
	for _, f := range u8Fields {
		v, err := r.Uint(f.name)
		if err != nil {
			return Record{}, fmt.Errorf("decoding mce_record field %q: %w", f.name, err)
		}
		*f.dst(&out) = uint8(v)
	}
	var err error
	if out.PPIN, err = optionalUint(r, "ppin"); err != nil {
		return Record{}, err
	}
	mc, err := optionalUint(r, "microcode")
	if err != nil {
		return Record{}, err
	}
	out.Microcode = uint32(mc)
	return out, nil
}

// optionalUint reads a field that older kernels lack: absent is zero, but a
// field that is declared and cannot be read (record too short) is still an
// error.
func optionalUint(r *tracefs.Record, name string) (uint64, error) {
	v, err := r.Uint(name)
	if errors.Is(err, tracefs.ErrNoField) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("decoding mce_record field %q: %w", name, err)
	}
	return v, nil
}
