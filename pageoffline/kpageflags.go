package pageoffline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/selfprotect/selfprotect/kpath"
)

// PageFlags is one /proc/kpageflags entry (include/uapi/linux/kernel-page-flags.h).
type PageFlags uint64

// Bits we act on or report.
const (
	KPFBuddy    = 10
	KPFHuge     = 17 // hugetlb page (head or tail)
	KPFHWPoison = 19
	KPFNoPage   = 20 // no struct page behind this PFN (a hole)
	KPFTHP      = 22
)

// MaxPFN bounds PFNs: x86-64 physical addresses have at most 52 bits, and
// a larger PFN would overflow the byte address we write.
const MaxPFN = 1<<(52-pageShift) - 1

const (
	pageShift     = 12
	kpageflagsLen = 8
)

// ErrPFNOutOfRange means the PFN lies beyond /proc/kpageflags (past max_pfn)
// or beyond the physical address space.
var ErrPFNOutOfRange = errors.New("pfn beyond the end of physical memory")

func (f PageFlags) has(bit uint) bool { return f&(1<<bit) != 0 }

func (f PageFlags) HWPoison() bool { return f.has(KPFHWPoison) }
func (f PageFlags) Huge() bool     { return f.has(KPFHuge) }
func (f PageFlags) THP() bool      { return f.has(KPFTHP) }
func (f PageFlags) NoPage() bool   { return f.has(KPFNoPage) }
func (f PageFlags) Buddy() bool    { return f.has(KPFBuddy) }

// String names the flags a report cares about, e.g. "0x285018 (hwpoison)".
func (f PageFlags) String() string {
	var names []string
	for _, n := range []struct {
		bit  uint
		name string
	}{{KPFBuddy, "buddy"}, {KPFHuge, "huge"}, {KPFHWPoison, "hwpoison"}, {KPFNoPage, "nopage"}, {KPFTHP, "thp"}} {
		if f.has(n.bit) {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("%#x", uint64(f))
	}
	return fmt.Sprintf("%#x (%s)", uint64(f), strings.Join(names, ","))
}

// ParsePageFlags decodes one little-endian 8-byte kpageflags entry.
func ParsePageFlags(b []byte) (PageFlags, error) {
	if len(b) != kpageflagsLen {
		return 0, fmt.Errorf("kpageflags entry: want %d bytes, got %d", kpageflagsLen, len(b))
	}
	return PageFlags(binary.LittleEndian.Uint64(b)), nil
}

// ReadPageFlags reads the kpageflags entry of pfn (offset pfn*8).
func ReadPageFlags(p kpath.Paths, fsys kpath.FS, pfn uint64) (PageFlags, error) {
	path := p.ProcPath("kpageflags")
	return readPageFlags(path, func(b []byte, off int64) (int, error) { return fsys.ReadAt(path, b, off) }, pfn)
}

// readPageFlags reads pfn's entry of the kpageflags file at path through
// readAt (a kpath.FS's, or a kept descriptor's).
func readPageFlags(path string, readAt func([]byte, int64) (int, error), pfn uint64) (PageFlags, error) {
	if pfn > MaxPFN {
		return 0, fmt.Errorf("reading %s for pfn %#x: %w", path, pfn, ErrPFNOutOfRange)
	}
	var buf [kpageflagsLen]byte
	n, err := readAt(buf[:], int64(pfn)*kpageflagsLen)
	if n < kpageflagsLen && (err == nil || errors.Is(err, io.EOF)) {
		return 0, fmt.Errorf("reading %s for pfn %#x: %w", path, pfn, ErrPFNOutOfRange)
	}
	if n < kpageflagsLen {
		return 0, fmt.Errorf("reading %s for pfn %#x: %w", path, pfn, err)
	}
	return ParsePageFlags(buf[:])
}

// Poisoned reports whether pfn carries the HWPOISON flag.
func Poisoned(p kpath.Paths, fsys kpath.FS, pfn uint64) (bool, error) {
	f, err := ReadPageFlags(p, fsys, pfn)
	if err != nil {
		return false, err
	}
	return f.HWPoison(), nil
}
