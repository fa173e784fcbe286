package sim

import (
	"encoding/binary"
	"fmt"
)

// rawEvent is one data event decoded from a ring-buffer page.
type rawEvent struct {
	ts      uint64
	payload []byte
}

// decodePage is the tests' own small ring-buffer reader, written from the
// kernel's layout independently of the encoder: it follows type_len,
// time_extend and padding events and yields data events with absolute
// timestamps.
func decodePage(page []byte) ([]rawEvent, error) {
	if len(page) < pageHeaderSize {
		return nil, fmt.Errorf("page of %d bytes", len(page))
	}
	ts := binary.LittleEndian.Uint64(page)
	commit := int(binary.LittleEndian.Uint64(page[8:]) & 0xfffff) // low bits: size; high bits: flags
	if pageHeaderSize+commit > len(page) {
		return nil, fmt.Errorf("commit %d beyond page", commit)
	}
	data := page[pageHeaderSize : pageHeaderSize+commit]
	var out []rawEvent
	for off := 0; off < len(data); {
		if off+4 > len(data) {
			return nil, fmt.Errorf("truncated header at %d", off)
		}
		w := binary.LittleEndian.Uint32(data[off:])
		typeLen, delta := w&31, uint64(w>>5)
		switch {
		case typeLen == 29: // padding
			if off+8 > len(data) {
				return out, nil
			}
			off += 4 + int(binary.LittleEndian.Uint32(data[off+4:]))
		case typeLen == 30: // time_extend
			if off+8 > len(data) {
				return nil, fmt.Errorf("truncated time_extend at %d", off)
			}
			ts += delta | uint64(binary.LittleEndian.Uint32(data[off+4:]))<<27
			off += 8
		case typeLen == 31: // absolute time stamp
			return nil, fmt.Errorf("unexpected time_stamp event at %d", off)
		case typeLen == 0:
			if off+8 > len(data) {
				return nil, fmt.Errorf("truncated length at %d", off)
			}
			n := int(binary.LittleEndian.Uint32(data[off+4:])) - 4
			if n < 0 || off+8+n > len(data) {
				return nil, fmt.Errorf("bad length %d at %d", n, off)
			}
			ts += delta
			out = append(out, rawEvent{ts: ts, payload: data[off+8 : off+8+n]})
			off += 8 + n
		default:
			n := int(typeLen) * 4
			if off+4+n > len(data) {
				return nil, fmt.Errorf("event of %d bytes beyond commit at %d", n, off)
			}
			ts += delta
			out = append(out, rawEvent{ts: ts, payload: data[off+4 : off+4+n]})
			off += 4 + n
		}
	}
	return out, nil
}
