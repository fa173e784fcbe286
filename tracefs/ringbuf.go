package tracefs

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PageSize is the size of one ring-buffer page as trace_pipe_raw hands it
// out on x86-64 with the default sub-buffer size.
const PageSize = 4096

// PageHeaderSize is the u64 timestamp plus the u64 commit word (header_page).
const PageHeaderSize = 16

// Bits of the commit word. The kernel keeps the data size in the low bits
// and, when it hands a page to a reader, flags in bits 31 and 30 that events
// were lost before this page and whether their count follows the data.
const (
	commitMissedEvents = 1 << 31
	commitMissedStored = 1 << 30
	commitSizeMask     = 1<<27 - 1
	// No kernel sets bits 27..29 or the upper half; a page with any of them
	// is not a ring-buffer page.
	commitUnknownBits = ^uint64(commitSizeMask | commitMissedEvents | commitMissedStored)
)

// Event header type_len values above the data range (1..28 inline length,
// 0 length word).
const (
	typeLenMaxData    = 28
	typePadding       = 29
	typeTimeExtend    = 30
	typeTimeStamp     = 31
	eventHeaderSize   = 4
	timeShift         = 27
	absTimeStampUpper = uint64(0xf8) << 56 // bits an absolute stamp cannot hold
)

// ErrCorruptPage wraps every structural problem found in a page: a commit
// word no kernel writes, an event running past the data, a length that
// cannot be. Callers count such pages and read on.
var ErrCorruptPage = errors.New("corrupt ring-buffer page")

// PageResult is what one page held.
type PageResult struct {
	// Timestamp is the page's base time stamp (trace_clock units).
	Timestamp uint64
	// Records are the data records whose ID has a format, in buffer order.
	// Their Data slices alias the page.
	Records []Record
	// Missed is the number of events the kernel lost before this page
	// (overwritten or dropped), when it stored the count.
	Missed uint64
	// MissedUnknown says events were lost but the page had no room for
	// their count.
	MissedUnknown bool
	// Unknown counts data records whose ID has no format.
	Unknown int
	// Skipped counts discarded events (padding with a length).
	Skipped int
}

// Lost reports whether the kernel lost events before this page.
func (r *PageResult) Lost() bool { return r.Missed > 0 || r.MissedUnknown }

// ParsePage decodes one page read from per_cpu/cpuN/trace_pipe_raw. cpu is
// the buffer the page came from and is copied into each Record. A corrupt
// or truncated page yields the records before the damage together with an
// error wrapping ErrCorruptPage that names the byte offset.
func ParsePage(page []byte, cpu int, formats *Formats) (PageResult, error) {
	var res PageResult
	err := parsePageInto(page, cpu, formats, &res)
	return res, err
}

// parsePageInto is ParsePage reusing res.Records' storage, for readers that
// parse page after page.
func parsePageInto(page []byte, cpu int, formats *Formats, res *PageResult) error {
	*res = PageResult{Records: res.Records[:0]}
	if len(page) < PageHeaderSize {
		return fmt.Errorf("%w: %d bytes, shorter than the %d-byte page header", ErrCorruptPage, len(page), PageHeaderSize)
	}
	res.Timestamp = binary.LittleEndian.Uint64(page[0:8])
	commit := binary.LittleEndian.Uint64(page[8:16])
	if commit&commitUnknownBits != 0 {
		return fmt.Errorf("%w: offset 8: commit word %#x has bits no kernel sets", ErrCorruptPage, commit)
	}
	size := int(commit & commitSizeMask)
	end := PageHeaderSize + size
	var errTail error
	if end > len(page) {
		errTail = fmt.Errorf("%w: offset 8: commit says %d data bytes, page holds %d", ErrCorruptPage, size, len(page)-PageHeaderSize)
		end = len(page)
	}
	if commit&commitMissedEvents != 0 {
		res.MissedUnknown = true
		if commit&commitMissedStored != 0 && end+8 <= len(page) && errTail == nil {
			res.Missed = binary.LittleEndian.Uint64(page[end:])
			res.MissedUnknown = false
		}
	}
	if err := parseEvents(page, end, cpu, formats, res); err != nil {
		return err
	}
	return errTail
}

// parseEvents walks the events between the page header and end.
func parseEvents(page []byte, end, cpu int, formats *Formats, res *PageResult) error {
	ts := res.Timestamp
	off := PageHeaderSize
	for off < end {
		if off+eventHeaderSize > end {
			return fmt.Errorf("%w: offset %d: event header cut short by data end %d", ErrCorruptPage, off, end)
		}
		word := binary.LittleEndian.Uint32(page[off:])
		typeLen := word & 0x1f
		delta := uint64(word >> 5)
		switch {
		case typeLen == typePadding:
			if delta == 0 {
				// Unused tail of the page.
				return nil
			}
			n, err := array0(page, off, end, typeLen)
			if err != nil {
				return err
			}
			next := off + eventHeaderSize + int(n)
			if n < 4 || next > end {
				return fmt.Errorf("%w: offset %d: padding of %d bytes runs past data end %d", ErrCorruptPage, off, n, end)
			}
			// A discarded event; the kernel's reader does not advance time
			// for it either.
			res.Skipped++
			off = next
		case typeLen == typeTimeExtend:
			n, err := array0(page, off, end, typeLen)
			if err != nil {
				return err
			}
			ts += uint64(n)<<timeShift + delta
			off += 8
		case typeLen == typeTimeStamp:
			n, err := array0(page, off, end, typeLen)
			if err != nil {
				return err
			}
			ts = fixAbsTimeStamp(uint64(n)<<timeShift+delta, ts)
			off += 8
		default:
			dataOff, length := off+eventHeaderSize, int(typeLen)*4
			if typeLen == 0 {
				n, err := array0(page, off, end, typeLen)
				if err != nil {
					return err
				}
				// The length word counts itself.
				if n < 4 || n > uint32(end) {
					return fmt.Errorf("%w: offset %d: data length word %d is impossible", ErrCorruptPage, off, n)
				}
				dataOff, length = off+8, int(n)-4
			}
			next := dataOff + (length+3)&^3
			if dataOff+length > end || next > end {
				return fmt.Errorf("%w: offset %d: %d-byte record runs past data end %d", ErrCorruptPage, off, length, end)
			}
			if length < 2 {
				return fmt.Errorf("%w: offset %d: %d-byte record cannot hold an event ID", ErrCorruptPage, off, length)
			}
			ts += delta
			data := page[dataOff : dataOff+length : dataOff+length]
			id := binary.LittleEndian.Uint16(data)
			if f, ok := formats.ByID(id); ok {
				res.Records = append(res.Records, Record{Format: f, BufferCPU: cpu, TS: ts, Data: data})
			} else {
				res.Unknown++
			}
			off = next
		}
	}
	return nil
}

// array0 reads the u32 after an event header, which every type but inline
// data has.
func array0(page []byte, off, end int, typeLen uint32) (uint32, error) {
	if off+8 > end {
		return 0, fmt.Errorf("%w: offset %d: type %d event needs 8 bytes, data ends at %d", ErrCorruptPage, off, typeLen, end)
	}
	return binary.LittleEndian.Uint32(page[off+4:]), nil
}

// fixAbsTimeStamp restores the top bits an absolute time stamp event cannot
// carry (it holds 59 bits) from the running stamp, as the kernel does.
func fixAbsTimeStamp(abs, cur uint64) uint64 {
	if cur&absTimeStampUpper != 0 {
		abs |= cur & absTimeStampUpper
		if abs < cur {
			abs += 1 << 59
		}
	}
	return abs
}
