package sim

import (
	"encoding/binary"
	"errors"
)

// Ring-buffer page layout (kernel/trace/ring_buffer.c, header_page): a u64
// timestamp, a u64 commit (bytes of event data), then events, in pages of
// 4096 bytes as trace_pipe_raw hands them out.
const (
	pageSize       = 4096
	pageHeaderSize = 16
	pageDataSize   = pageSize - pageHeaderSize

	// An event header is one u32: type_len in bits 4:0, time_delta in 31:5.
	typeLenDataMax = 28 // type_len 1..28: payload of type_len*4 bytes follows
	typeTimeExtend = 30
	maxSmallData   = typeLenDataMax * 4
	deltaBits      = 27
)

var errPageFull = errors.New("ring buffer page full")

// pageEncoder packs events into one ring-buffer page the way the kernel
// does: payloads of at most 112 bytes use the compressed header
// (type_len = length/4), longer ones type_len 0 and a length word; a gap
// that does not fit the 27-bit delta is carried by a time_extend event in
// front of the record, whose own delta is then 0.
type pageEncoder struct {
	page    [pageSize]byte
	used    int // bytes of event data after the page header
	pageTS  uint64
	lastTS  uint64
	records int
}

// add appends one event with the given payload, recorded at ts (trace
// clock nanoseconds). It returns errPageFull when the event does not fit;
// the caller flushes the page and adds it to the next one.
func (e *pageEncoder) add(ts uint64, payload []byte) error {
	padded := (len(payload) + 3) &^ 3
	hdr := 4
	if padded > maxSmallData || padded == 0 {
		hdr = 8
	}
	if e.records == 0 {
		e.pageTS, e.lastTS = ts, ts
	}
	if ts < e.lastTS {
		ts = e.lastTS // the ring buffer never goes back in time
	}
	delta := ts - e.lastTS
	extend := 0
	if delta >= 1<<deltaBits {
		extend = 8
	}
	if e.used+extend+hdr+padded > pageDataSize {
		return errPageFull
	}
	out := e.page[pageHeaderSize+e.used:]
	if extend > 0 {
		binary.LittleEndian.PutUint32(out, typeTimeExtend|uint32(delta&(1<<deltaBits-1))<<5)
		binary.LittleEndian.PutUint32(out[4:], uint32(delta>>deltaBits))
		out = out[8:]
		delta = 0
	}
	if hdr == 4 {
		binary.LittleEndian.PutUint32(out, uint32(padded/4)|uint32(delta)<<5)
	} else {
		binary.LittleEndian.PutUint32(out, uint32(delta)<<5)
		binary.LittleEndian.PutUint32(out[4:], uint32(padded+4))
	}
	n := copy(out[hdr:], payload)
	clear(out[hdr+n : hdr+padded])
	e.used += extend + hdr + padded
	e.lastTS = ts
	e.records++
	return nil
}

// empty reports whether the page holds no event.
func (e *pageEncoder) empty() bool { return e.records == 0 }

// finish returns the finished page and resets the encoder. The slice is
// valid until the next add.
func (e *pageEncoder) finish() []byte {
	binary.LittleEndian.PutUint64(e.page[0:], e.pageTS)
	binary.LittleEndian.PutUint64(e.page[8:], uint64(e.used))
	clear(e.page[pageHeaderSize+e.used:])
	e.used, e.records = 0, 0
	return e.page[:]
}
