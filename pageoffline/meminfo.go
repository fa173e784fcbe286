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
	// The budget parses this on the way to every page offline and needs
	// two of its ~55 lines: each is found with one search, not by walking
	// the lines (under emulation the walk cost a tenth of the budget check).
	kb, found, err := memInfoField(data, "MemTotal")
	if err != nil {
		return m, err
	}
	if !found {
		return m, ErrNoMemTotal
	}
	m.TotalKB = kb
	m.HardwareCorruptedKB, m.HasHardwareCorrupted, err = memInfoField(data, "HardwareCorrupted")
	return m, err
}

// memInfoField parses the line "key: N kB" (key at a line's start).
func memInfoField(data []byte, key string) (kb uint64, found bool, err error) {
	prefix := []byte(key + ":")
	at := 0
	if !bytes.HasPrefix(data, prefix) {
		i := bytes.Index(data, append([]byte{'\n'}, prefix...))
		if i < 0 {
			return 0, false, nil
		}
		at = i + 1
	}
	rest := data[at+len(prefix):]
	if end := bytes.IndexByte(rest, '\n'); end >= 0 {
		rest = rest[:end]
	}
	kb, err = parseKB(rest)
	if err != nil {
		return 0, true, fmt.Errorf("line %d (%s): %w", bytes.Count(data[:at], []byte("\n"))+1, key, err)
	}
	return kb, true, nil
}

// parseKB parses " <number> kB" with any blanks around the two words.
func parseKB(b []byte) (uint64, error) {
	fields := bytes.Fields(b)
	if len(fields) != 2 || string(fields[1]) != "kB" {
		return 0, fmt.Errorf("want \"<number> kB\", got %q", strings.TrimSpace(string(b)))
	}
	n, err := strconv.ParseUint(string(fields[0]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", fields[0])
	}
	return n, nil
}
