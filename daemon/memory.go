package daemon

import (
	"bufio"
	"bytes"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/kpath"
)

// releaseStartupMemory gives back what starting needed and idling does
// not, once the sources are armed and the engines rebuilt: the heap left
// by parsing the policy, the probes' BTF and the recovery queries, and the
// mappings of code and tables only start-up touched. The kernel maps a
// Go binary's text in 64 KB fault-around chunks, so start-up alone leaves
// most of its 20 MB mapped: the resident set is then the binary, not what
// the daemon uses.
func (d *Daemon) releaseStartupMemory() {
	runtime.GC()
	debug.FreeOSMemory()
	n, err := dropCodeMappings(kpath.OS{}, kpath.Default().ProcPath("self", "maps"))
	if err != nil {
		d.log.WithError(err).Debug("start-up code mappings kept")
		return
	}
	d.log.WithField("bytes", n).Debug("start-up memory released")
}

// dropCodeMappings unmaps the pages of the running binary's read-only
// mappings (code, read-only data, the function table) with
// MADV_DONTNEED: nothing is lost, the pages stay in the page cache and
// the next use maps them back with a minor fault. Writable mappings
// (data, heap) are not touched. It returns the bytes of the mappings
// dropped.
func dropCodeMappings(fsys kpath.FS, mapsPath string) (uint64, error) {
	b, err := fsys.ReadFile(mapsPath)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", mapsPath, err)
	}
	ranges, err := binaryReadOnly(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", mapsPath, err)
	}
	var total uint64
	for _, r := range ranges {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(r.start), uintptr(r.end-r.start), unix.MADV_DONTNEED); errno != 0 {
			return total, fmt.Errorf("madvise %#x-%#x: %w", r.start, r.end, errno)
		}
		total += r.end - r.start
	}
	return total, nil
}

type addrRange struct{ start, end uint64 }

// binaryReadOnly picks from /proc/self/maps the read-only, private,
// file-backed mappings of the file mapped first: the executable (a static
// Go binary maps nothing before itself).
func binaryReadOnly(maps []byte) ([]addrRange, error) {
	var exe string
	var out []addrRange
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[4] == "0" {
			continue // anonymous
		}
		if exe == "" {
			exe = f[5]
		}
		if f[5] != exe || len(f[1]) != 4 || f[1][1] != '-' || f[1][3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("bad mapping %q", f[0])
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("bad mapping %q", f[0])
		}
		out = append(out, addrRange{start, end})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no read-only mapping of the executable")
	}
	return out, nil
}
