package main

import (
	"fmt"
	"strconv"
)

// parseUint accepts decimal or 0x-prefixed hex, as the /init script passes
// both PFNs and physical addresses.
func parseUint(what, s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing %s %q: %w", what, s, err)
	}
	return v, nil
}

func parseInt(what, s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("parsing %s %q: %w", what, s, err)
	}
	return v, nil
}

func hex(v uint64) string { return fmt.Sprintf("%#x", v) }
