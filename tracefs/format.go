// Package tracefs owns the daemon's tracefs instance and reads binary trace
// records through each event's own format file, so that field offsets, event
// IDs and record sizes come from the running kernel and never from a table.
package tracefs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Field is one line of a format file.
type Field struct {
	Name   string
	Type   string // the C declaration without the name, e.g. "u64", "__data_loc char[]"
	Offset int
	Size   int
	Signed bool
	// DataLoc fields hold a (length<<16 | offset) word pointing inside the
	// record at variable-length data.
	DataLoc bool
	// Array fields such as "char comm[16]" hold inline data.
	Array bool
}

// Format describes one event: its ID in the ring buffer and its layout.
type Format struct {
	System   string
	Name     string
	ID       uint16
	Fields   []Field
	PrintFmt string
	byName   map[string]int
}

// ErrNoField is returned when a record lacks a field the caller asked for
// (a field added or removed between kernels).
var ErrNoField = errors.New("no such field")

// ParseFormat parses the text of events/<system>/<name>/format. The source
// name is only used in error messages.
func ParseFormat(source, system string, data []byte) (*Format, error) {
	f := &Format{System: system, byName: map[string]int{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	haveID := false
	inPrintFmt := false
	for sc.Scan() {
		line++
		// print fmt is the last entry and its C string may hold a raw
		// newline (ras/aer_event does): every later line belongs to it.
		if inPrintFmt {
			f.PrintFmt += "\n" + sc.Text()
			continue
		}
		t := strings.TrimSpace(sc.Text())
		switch {
		case t == "" || t == "format:":
		case strings.HasPrefix(t, "name:"):
			f.Name = strings.TrimSpace(strings.TrimPrefix(t, "name:"))
		case strings.HasPrefix(t, "ID:"):
			id, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(t, "ID:")), 10, 16)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: bad event ID: %w", source, line, err)
			}
			f.ID = uint16(id)
			haveID = true
		case strings.HasPrefix(t, "field:"):
			fld, err := parseField(t)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", source, line, err)
			}
			if _, dup := f.byName[fld.Name]; dup {
				return nil, fmt.Errorf("%s:%d: field %q declared twice", source, line, fld.Name)
			}
			f.byName[fld.Name] = len(f.Fields)
			f.Fields = append(f.Fields, fld)
		case strings.HasPrefix(t, "print fmt:"):
			f.PrintFmt = strings.TrimSpace(strings.TrimPrefix(t, "print fmt:"))
			inPrintFmt = true
		default:
			return nil, fmt.Errorf("%s:%d: unexpected line %q", source, line, t)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	f.PrintFmt = strings.TrimRight(f.PrintFmt, "\n")
	if f.Name == "" {
		return nil, fmt.Errorf("%s: no name: line", source)
	}
	if !haveID {
		return nil, fmt.Errorf("%s: no ID: line", source)
	}
	if len(f.Fields) == 0 {
		return nil, fmt.Errorf("%s: no fields", source)
	}
	return f, nil
}

// parseField parses "field:u64 status;	offset:24;	size:8;	signed:0;".
func parseField(t string) (Field, error) {
	var fld Field
	parts := strings.Split(t, ";")
	haveOff, haveSize := false, false
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		key, val, ok := strings.Cut(p, ":")
		if !ok {
			return fld, fmt.Errorf("field attribute %q has no colon", p)
		}
		val = strings.TrimSpace(val)
		switch key {
		case "field":
			decl := val
			// The name is the last identifier, after any array suffix is
			// taken off: "char comm[16]" -> name comm, type "char[16]".
			arr := ""
			if i := strings.IndexByte(decl, '['); i >= 0 && strings.HasSuffix(decl, "]") {
				arr = decl[i:]
				decl = strings.TrimSpace(decl[:i])
			}
			sp := strings.LastIndexAny(decl, " \t*")
			if sp < 0 {
				return fld, fmt.Errorf("field declaration %q has no type", val)
			}
			fld.Name = decl[sp+1:]
			fld.Type = strings.TrimSpace(decl[:sp+1]) + arr
			if fld.Name == "" {
				return fld, fmt.Errorf("field declaration %q has no name", val)
			}
			fld.DataLoc = strings.HasPrefix(fld.Type, "__data_loc")
			// "__data_loc char[] msg": the [] belongs to the type, not the name.
			if strings.HasSuffix(fld.Name, "]") {
				return fld, fmt.Errorf("field declaration %q: cannot parse name", val)
			}
			fld.Array = arr != "" && !fld.DataLoc
		case "offset":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return fld, fmt.Errorf("field %q: bad offset %q", fld.Name, val)
			}
			fld.Offset, haveOff = n, true
		case "size":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 {
				return fld, fmt.Errorf("field %q: bad size %q", fld.Name, val)
			}
			fld.Size, haveSize = n, true
		case "signed":
			fld.Signed = val == "1"
		}
	}
	if fld.Name == "" || !haveOff || !haveSize {
		return fld, fmt.Errorf("field line %q lacks name, offset or size", t)
	}
	return fld, nil
}

// Field returns the named field.
func (f *Format) Field(name string) (Field, bool) {
	i, ok := f.byName[name]
	if !ok {
		return Field{}, false
	}
	return f.Fields[i], true
}

// Has reports whether the event has the named field.
func (f *Format) Has(name string) bool { _, ok := f.byName[name]; return ok }

// MinSize is the smallest record payload that holds every fixed field.
func (f *Format) MinSize() int {
	m := 0
	for _, fld := range f.Fields {
		if end := fld.Offset + fld.Size; end > m {
			m = end
		}
	}
	return m
}

// Record is one event read from the ring buffer: its payload, starting with
// common_type, laid out as Format says.
type Record struct {
	Format *Format
	// BufferCPU is the per-CPU ring buffer the record was read from. It is
	// not the CPU the error is about: use the record's own cpu field.
	BufferCPU int
	// TS is the ring buffer timestamp in the instance's trace_clock units
	// (nanoseconds for the default "local" clock).
	TS   uint64
	Data []byte
}

func (r *Record) field(name string) (Field, error) {
	fld, ok := r.Format.Field(name)
	if !ok {
		return fld, fmt.Errorf("%s: %q: %w", r.Format.Name, name, ErrNoField)
	}
	if fld.Offset+fld.Size > len(r.Data) {
		return fld, fmt.Errorf("%s: field %q at %d+%d beyond record of %d bytes", r.Format.Name, name, fld.Offset, fld.Size, len(r.Data))
	}
	return fld, nil
}

// Uint reads an unsigned integer field of 1, 2, 4 or 8 bytes (little endian,
// as on x86).
func (r *Record) Uint(name string) (uint64, error) {
	fld, err := r.field(name)
	if err != nil {
		return 0, err
	}
	b := r.Data[fld.Offset : fld.Offset+fld.Size]
	switch fld.Size {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.LittleEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.LittleEndian.Uint32(b)), nil
	case 8:
		return binary.LittleEndian.Uint64(b), nil
	}
	return 0, fmt.Errorf("%s: field %q has size %d, not an integer", r.Format.Name, name, fld.Size)
}

// Int reads an integer field, sign-extending it when the format says signed.
func (r *Record) Int(name string) (int64, error) {
	u, err := r.Uint(name)
	if err != nil {
		return 0, err
	}
	fld, _ := r.Format.Field(name)
	if !fld.Signed {
		return int64(u), nil
	}
	shift := 64 - 8*uint(fld.Size)
	return int64(u<<shift) >> shift, nil
}

// String reads a "__data_loc char[]" or "char name[N]" field up to its NUL.
func (r *Record) String(name string) (string, error) {
	fld, err := r.field(name)
	if err != nil {
		return "", err
	}
	var b []byte
	switch {
	case fld.DataLoc:
		loc := binary.LittleEndian.Uint32(r.Data[fld.Offset:])
		off, n := int(loc&0xffff), int(loc>>16)
		if off+n > len(r.Data) {
			return "", fmt.Errorf("%s: string %q at %d+%d beyond record of %d bytes", r.Format.Name, name, off, n, len(r.Data))
		}
		b = r.Data[off : off+n]
	case fld.Array:
		b = r.Data[fld.Offset : fld.Offset+fld.Size]
	default:
		return "", fmt.Errorf("%s: field %q (%s) is not a string", r.Format.Name, name, fld.Type)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b), nil
}
