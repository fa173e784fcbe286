package sim

import (
	"encoding/binary"
	"fmt"

	"github.com/selfprotect/selfprotect/tracefs"
)

// payload lays out one event record from its format file: fixed fields at
// their offsets, "__data_loc char[]" strings appended after the fixed part
// in the order they are set, each with its NUL.
type payload struct {
	f   *tracefs.Format
	buf []byte
}

// fixedSize is sizeof the kernel's trace_event_raw_<event> struct: the end
// of the last field rounded up to the widest scalar field's alignment.
func fixedSize(f *tracefs.Format) int {
	align := 1
	for _, fld := range f.Fields {
		if !fld.Array && !fld.DataLoc && fld.Size <= 8 && fld.Size > align {
			align = fld.Size
		}
	}
	if align < 4 && hasDataLoc(f) {
		align = 4
	}
	n := f.MinSize()
	return (n + align - 1) / align * align
}

func hasDataLoc(f *tracefs.Format) bool {
	for _, fld := range f.Fields {
		if fld.DataLoc {
			return true
		}
	}
	return false
}

func newPayload(f *tracefs.Format, pid uint32) *payload {
	p := &payload{f: f, buf: make([]byte, fixedSize(f))}
	p.mustSet("common_type", uint64(f.ID))
	p.mustSet("common_pid", uint64(pid))
	return p
}

// set writes an integer field. Setting a field the format lacks is an
// error, so a kernel difference shows up in tests instead of as zeros.
func (p *payload) set(name string, v uint64) error {
	fld, ok := p.f.Field(name)
	if !ok {
		return fmt.Errorf("%s: %q: %w", p.f.Name, name, tracefs.ErrNoField)
	}
	b := p.buf[fld.Offset : fld.Offset+fld.Size]
	switch fld.Size {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b, uint32(v))
	case 8:
		binary.LittleEndian.PutUint64(b, v)
	default:
		return fmt.Errorf("%s: field %q has size %d, not an integer", p.f.Name, name, fld.Size)
	}
	return nil
}

// setIfPresent sets a field that only some kernels have (ppin, microcode).
func (p *payload) setIfPresent(name string, v uint64) error {
	if !p.f.Has(name) {
		return nil
	}
	return p.set(name, v)
}

// mustSet is for the common_* fields every format has.
func (p *payload) mustSet(name string, v uint64) {
	_ = p.set(name, v)
}

// setString appends s to the dynamic area and points the __data_loc word
// at it: (length << 16) | offset, the length counting the NUL.
func (p *payload) setString(name, s string) error {
	fld, ok := p.f.Field(name)
	if !ok {
		return fmt.Errorf("%s: %q: %w", p.f.Name, name, tracefs.ErrNoField)
	}
	if !fld.DataLoc {
		return fmt.Errorf("%s: field %q is not a __data_loc string", p.f.Name, name)
	}
	n := len(s) + 1
	if len(p.buf)+n > 0xffff {
		return fmt.Errorf("%s: string %q too long for a __data_loc", p.f.Name, name)
	}
	binary.LittleEndian.PutUint32(p.buf[fld.Offset:], uint32(n)<<16|uint32(len(p.buf)))
	p.buf = append(p.buf, s...)
	p.buf = append(p.buf, 0)
	return nil
}

// bytes returns the record padded to 4 bytes, as the ring buffer stores it.
func (p *payload) bytes() []byte {
	for len(p.buf)%4 != 0 {
		p.buf = append(p.buf, 0)
	}
	return p.buf
}
