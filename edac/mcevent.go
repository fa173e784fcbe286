package edac

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/tracefs"
)

// enum hw_event_mc_err_type in include/linux/edac.h.
const (
	hwEventErrCorrected   = 0
	hwEventErrUncorrected = 1
	hwEventErrDeferred    = 2
	hwEventErrFatal       = 3
	hwEventErrInfo        = 4
)

// ErrInformational marks an mc_event of type HW_EVENT_ERR_INFO: a firmware
// log entry, not an error, so it feeds no rate engine.
var ErrInformational = errors.New("informational mc_event, not an error")

// placeholderLabels are what edac_mc writes when it knows no DIMM; they name
// no part a technician could replace.
var placeholderLabels = map[string]bool{
	"any memory":     true,
	"unknown memory": true,
	"unknown label":  true,
}

// unplacedMessages are amd64_edac's messages (its err_code strings) for an
// error it could not map to a chip select: it logs such an error at csrow
// 0 of the node (on 6.12, at channel 0 too, where 6.1 keeps the UMC), so the
// record's label and layers are where the kernel counted it, not where it
// is. The MCA record of the same error names its UMC but no chip select.
var unplacedMessages = map[string]bool{
	"MCA_SYND not valid - unknown syndrome and csrow": true, // Zen UMC, MCA_SYND not valid
	"Failed to map error addr to a csrow":             true,
	"Failed to map error addr to a node":              true,
}

// Unplaced says whether an mc_event message is one amd64_edac logs for an
// error it could not place on a rank (the record's label is then the
// counter's, fault.LocatedByUnplaced). Replays of stored mc_events ask it
// as the decoder does.
func Unplaced(msg string) bool { return unplacedMessages[msg] }

// TraceDecoder decodes one ras:mc_event record for the tracefs source.
// Informational records yield no event and no error.
func TraceDecoder(rec *tracefs.Record, received time.Time) ([]fault.Event, error) {
	ev, err := FromMCEvent(rec, received)
	if errors.Is(err, ErrInformational) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return []fault.Event{ev}, nil
}

// FromMCEvent decodes one ras:mc_event record. Fields are read by name
// through the record's own format, so the 6.1 and 6.12 layouts (and any
// later one that keeps the names) decode alike.
func FromMCEvent(rec *tracefs.Record, received time.Time) (fault.Event, error) {
	ev := fault.NewEvent(fault.SourceTraceMC, received)
	if rec == nil || rec.Format == nil {
		return ev, errors.New("mc_event: no record or no format")
	}
	r := fieldReader{rec: rec}
	typ := r.uint("error_type")
	msg := r.str("msg")
	label := r.str("label")
	count := r.uint("error_count")
	mc := r.uint("mc_index")
	top, mid, low := r.int("top_layer"), r.int("middle_layer"), r.int("lower_layer")
	addr := r.uint("address")
	grain := r.uint("grain_bits")
	synd := r.uint("syndrome")
	detail := r.str("driver_detail")
	if r.err != nil {
		return ev, fmt.Errorf("decoding mc_event: %w", r.err)
	}

	switch typ {
	case hwEventErrCorrected:
		ev.Severity = fault.SeverityCorrected
	case hwEventErrUncorrected:
		ev.Severity = fault.SeverityUncorrectedRecoverable
	case hwEventErrDeferred:
		ev.Severity = fault.SeverityDeferred
	case hwEventErrFatal:
		ev.Severity = fault.SeverityFatal
	case hwEventErrInfo:
		return ev, ErrInformational
	default:
		return ev, fmt.Errorf("decoding mc_event: unknown error_type %d", typ)
	}

	ev.Class = fault.ClassMemory
	// A record stands for error_count errors; drivers that leave it 0 still
	// reported one.
	ev.Count = uint32(max(count, 1))
	ev.MC = int(mc)
	ev.Layers = [3]int{layer(top), layer(mid), layer(low)}
	// The kernel stores (page << PAGE_SHIFT) | offset; 0 means the driver
	// had no address.
	ev.PhysAddr = addr
	ev.AddrValid = addr != 0
	ev.AddrLSB = uint8(min(grain, 64))
	ev.Synd = synd
	if !placeholderLabels[label] {
		// "DIMM_A1 or DIMM_A2" stays whole: the driver could not tell which,
		// and a technician needs to see both.
		ev.DIMMLabel = label
	}
	ev.Row = RowKey(ev.MC, ev.Layers, detail)
	if Unplaced(msg) {
		ev.LocatedBy, ev.Row = fault.LocatedByUnplaced, ""
	}
	ev.Detail = joinDetail(errorTypeName(typ), msg, label, detail)
	return ev, nil
}

// layer maps the tracepoint's signed layer (-1 = not used) to fault.Unknown.
func layer(v int64) int {
	if v < 0 {
		return fault.Unknown
	}
	return int(v)
}

func errorTypeName(t uint64) string {
	switch t {
	case hwEventErrCorrected:
		return "Corrected"
	case hwEventErrUncorrected:
		return "Uncorrected"
	case hwEventErrDeferred:
		return "Deferred"
	case hwEventErrFatal:
		return "Fatal"
	}
	return "Info"
}

func joinDetail(typ, msg, label, detail string) string {
	var b strings.Builder
	b.WriteString(typ)
	b.WriteString(" error")
	if msg != "" {
		b.WriteString(": ")
		b.WriteString(msg)
	}
	if label != "" {
		b.WriteString(" on ")
		b.WriteString(label)
	}
	if detail != "" {
		b.WriteString(" (")
		b.WriteString(detail)
		b.WriteString(")")
	}
	return b.String()
}

// fieldReader keeps the first error so the decoder reads straight through.
type fieldReader struct {
	rec *tracefs.Record
	err error
}

func (r *fieldReader) uint(name string) uint64 {
	if r.err != nil {
		return 0
	}
	v, err := r.rec.Uint(name)
	r.err = err
	return v
}

func (r *fieldReader) int(name string) int64 {
	if r.err != nil {
		return 0
	}
	v, err := r.rec.Int(name)
	r.err = err
	return v
}

func (r *fieldReader) str(name string) string {
	if r.err != nil {
		return ""
	}
	v, err := r.rec.String(name)
	r.err = err
	return v
}
