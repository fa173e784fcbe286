package pageoffline

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/selfprotect/selfprotect/kpath"
)

// MemInfo is the part of /proc/meminfo the page budget and the report need.
type MemInfo struct {
	TotalKB             uint64
	HardwareCorruptedKB uint64
	// HasHardwareCorrupted is false on kernels built without
	// CONFIG_MEMORY_FAILURE, where the line is absent.
	HasHardwareCorrupted bool
}

// ErrNoMemTotal means the input had no MemTotal line: not a meminfo file.
var ErrNoMemTotal = errors.New("meminfo has no MemTotal line")

// ReadMemInfo reads <proc>/meminfo. It parses the file itself rather than
// through prometheus/procfs so that reads go through the injected kpath.FS.
func ReadMemInfo(p kpath.Paths, fsys kpath.FS) (MemInfo, error) {
	path := p.ProcPath("meminfo")
	data, err := fsys.ReadFile(path)
	return parseMemInfoRead(path, data, err)
}

func parseMemInfoRead(path string, data []byte, err error) (MemInfo, error) {
	if err != nil {
		return MemInfo{}, fmt.Errorf("reading %s: %w", path, err)
	}
	m, err := ParseMemInfo(data)
	if err != nil {
		return m, fmt.Errorf("parsing %s: %w", path, err)
	}
	return m, nil
}

// ParseMemInfo parses meminfo text ("HardwareCorrupted:     4 kB").
// Lines it does not need are skipped; malformed lines it needs are errors.
func ParseMemInfo(data []byte) (MemInfo, error) {
	var m MemInfo
	haveTotal := false
	// Line by line without a copy of each: the budget parses this on the
	// way to every page offline, and needs two of its ~55 lines.
	for line := 1; len(data) > 0; line++ {
		var l []byte
		l, data, _ = bytes.Cut(data, []byte("\n"))
		key, rest, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		total := string(key) == "MemTotal"
		if !total && string(key) != "HardwareCorrupted" {
			continue
		}
		kb, err := parseKB(string(rest))
		if err != nil {
			return m, fmt.Errorf("line %d (%s): %w", line, key, err)
		}
		if total {
			m.TotalKB, haveTotal = kb, true
		} else {
			m.HardwareCorruptedKB, m.HasHardwareCorrupted = kb, true
		}
	}
	if !haveTotal {
		return m, ErrNoMemTotal
	}
	return m, nil
}

func parseKB(s string) (uint64, error) {
	fields := strings.Fields(s)
	if len(fields) != 2 || fields[1] != "kB" {
		return 0, fmt.Errorf("want \"<number> kB\", got %q", strings.TrimSpace(s))
	}
	n, err := strconv.ParseUint(fields[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", fields[0])
	}
	return n, nil
}
