package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// kpfBuddy is KPF_BUDDY in /proc/kpageflags: the page is free, on the
// buddy allocator's lists.
const kpfBuddy = 10

// cmdFreePage finds the first free, unpoisoned page at or after PFN FROM
// and writes its PFN and physical address to DIR/pfn and DIR/addr. The
// two-boot scenario retires such a page: a page free early in one boot is
// most likely free (or at least movable) at the same point of the next,
// so the second boot's soft offline can take it again. A held user page
// would do in the first boot, but its frame may hold kernel memory next
// time.
func cmdFreePage(e env, args []string) (map[string]any, error) {
	from, err := parseUint("PFN", args[0])
	if err != nil {
		return nil, err
	}
	dir := args[1]
	p := e.paths.ProcPath("kpageflags")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", p, err)
	}
	defer f.Close()
	// 64 Ki pages (256 MiB) is far more than a 1 GiB guest needs to find
	// one free page in.
	for pfn := from; pfn < from+1<<16; pfn++ {
		flags, err := readFlags(f, pfn)
		if err != nil {
			return nil, err
		}
		if flags&(1<<kpfBuddy) == 0 || flags&(1<<kpfHWPoison) != 0 {
			continue
		}
		addr := pfn * uint64(pageSize)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		for name, v := range map[string]uint64{"pfn": pfn, "addr": addr} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(hex(v)+"\n"), 0o644); err != nil {
				return nil, err
			}
		}
		return map[string]any{"pfn": hex(pfn), "addr": hex(addr), "flags": hex(flags)}, nil
	}
	return nil, fmt.Errorf("no free page in the 65536 pages from PFN %#x", from)
}
