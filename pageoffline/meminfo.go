package pageoffline

import (
	"bufio"
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
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "MemTotal" && key != "HardwareCorrupted") {
			continue
		}
		kb, err := parseKB(rest)
		if err != nil {
			return m, fmt.Errorf("line %d (%s): %w", line, key, err)
		}
		if key == "MemTotal" {
			m.TotalKB, haveTotal = kb, true
		} else {
			m.HardwareCorruptedKB, m.HasHardwareCorrupted = kb, true
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
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
