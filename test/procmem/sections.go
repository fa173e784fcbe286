package procmem

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Section is a named range of the executable file.
type Section struct {
	Name        string
	Offset, End uint64 // file offsets
}

// Mapping is one mapping of the executable: where it is and which file
// offset it starts at.
type Mapping struct {
	Start, End, Offset uint64
}

// ExeMappings picks the executable's mappings (the first file mapped)
// from /proc/PID/maps.
func ExeMappings(maps []byte) ([]Mapping, error) {
	var exe string
	var out []Mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[4] == "0" {
			continue
		}
		if exe == "" {
			exe = f[5]
		}
		if f[5] != exe {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		off, err3 := strconv.ParseUint(f[2], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil || end <= start {
			return nil, fmt.Errorf("maps: bad mapping %q", sc.Text())
		}
		out = append(out, Mapping{start, end, off})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading maps: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("maps: no file-backed mapping")
	}
	return out, nil
}

// ELFSections reads the executable's allocated sections with file
// contents (.text, .rodata, .gopclntab, ...).
func ELFSections(r io.ReaderAt) ([]Section, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("reading the executable: %w", err)
	}
	var out []Section
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOBITS || s.Flags&elf.SHF_ALLOC == 0 || s.Size == 0 {
			continue
		}
		out = append(out, Section{s.Name, s.Offset, s.Offset + s.Size})
	}
	return out, nil
}

// ResidentBySection adds up, in kB, the executable's pages that are
// mapped in (pagemap's bit 63) by the section their file offset falls in:
// which of the binary's parts an idle process keeps touching. pagemap
// reads the 8-byte entry of a virtual page number; pageSize is in bytes.
func ResidentBySection(maps []Mapping, sections []Section, pagemap io.ReaderAt, pageSize uint64) (map[string]uint64, error) {
	out := map[string]uint64{}
	buf := make([]byte, 8)
	for _, m := range maps {
		for addr := m.Start; addr < m.End; addr += pageSize {
			if _, err := pagemap.ReadAt(buf, int64(addr/pageSize*8)); err != nil {
				return nil, fmt.Errorf("pagemap at %#x: %w", addr, err)
			}
			if binary.LittleEndian.Uint64(buf)&(1<<63) == 0 {
				continue
			}
			off := m.Offset + addr - m.Start
			name := "other"
			for _, s := range sections {
				// A page may hold the end of one section and the start of
				// the next: it goes to the one it starts in.
				if off+pageSize > s.Offset && off < s.End {
					name = s.Name
					break
				}
			}
			out[name] += pageSize / 1024
		}
	}
	return out, nil
}

// FormatSections is "name kB, ..." in MiB, largest first.
func FormatSections(kb map[string]uint64) string {
	names := make([]string, 0, len(kb))
	for n := range kb {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if kb[names[i]] != kb[names[j]] {
			return kb[names[i]] > kb[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.2f", n, mib(kb[n]))
	}
	return strings.Join(parts, ", ")
}
