package mce

import (
	"errors"
	"fmt"
	"time"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/tracefs"
)

// ToEvent builds the normalized event for a decoded record. received is
// when the daemon read it; the record's own walltime (seconds since the
// epoch, 0 when the kernel did not fill it) becomes Recorded.
func ToEvent(r Record, d Decoded, received time.Time, src fault.Source) fault.Event {
	ev := fault.NewEvent(src, received)
	if r.Walltime != 0 {
		ev.Recorded = time.Unix(int64(r.Walltime), 0).UTC()
	}
	ev.Class = d.Class
	ev.Severity = d.Severity
	ev.CPU = int(r.CPU)
	ev.Socket = int(r.SocketID)
	ev.Bank = int(r.Bank)
	ev.Vendor = d.Vendor
	ev.CacheLevel = d.CacheLevel
	ev.CoreBank = d.CoreBank
	ev.Channel, ev.ChipSelect = d.Channel, d.ChipSelect
	ev.Status, ev.Addr, ev.Misc, ev.Synd, ev.IPID = r.Status, r.Addr, r.Misc, r.Synd, r.IPID
	ev.TSC = r.TSC
	// The event's AddrValid means "usable as a physical address", which is
	// stricter than the status register's ADDRV.
	if d.AddrUsable {
		ev.PhysAddr = d.PhysAddr
		ev.AddrValid = true
		ev.AddrLSB = d.AddrLSB
	}
	ev.Detail = d.Summary
	return ev
}

// TraceDecoder decodes one mce:mce_record from the tracefs source into the
// event it stands for. Its signature is the one the tracefs dispatcher
// expects for every event decoder.
func TraceDecoder(rec *tracefs.Record, received time.Time) ([]fault.Event, error) {
	r, err := FromTrace(rec)
	if err != nil {
		return nil, err
	}
	d := Decode(r)
	if !d.Valid {
		return nil, fmt.Errorf("mce_record cpu %d bank %d: status %#x: %w", r.CPU, r.Bank, r.Status, ErrInvalidStatus)
	}
	return []fault.Event{ToEvent(r, d, received, fault.SourceTraceMCE)}, nil
}

// ErrInvalidStatus is returned for a record whose status lacks the VAL
// bit: the bank held nothing, and the kernel should not have logged it.
var ErrInvalidStatus = errors.New("MCA status not valid")
