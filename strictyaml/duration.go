package strictyaml

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDuration accepts Go durations ("10s", "24h", "1h30m") and a leading
// day count ("7d", "1.5d", "1d12h"), since error windows are often days.
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q (want e.g. \"10s\", \"24h\" or \"7d\")", s)
	days, rest, hasDays := strings.Cut(s, "d")
	if !hasDays {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, bad
		}
		return d, nil
	}
	n, err := strconv.ParseFloat(days, 64)
	if err != nil || days == "" || strings.ContainsAny(days, "eEinfINFx_+") || math.IsNaN(n) {
		return 0, bad
	}
	neg := n < 0
	if neg {
		n = -n
	}
	const maxDays = float64(math.MaxInt64) / float64(24*time.Hour)
	if n > maxDays {
		return 0, bad
	}
	d := time.Duration(n * float64(24*time.Hour))
	if rest != "" {
		if rest[0] == '-' || rest[0] == '+' {
			return 0, bad
		}
		r, err := time.ParseDuration(rest)
		if err != nil || d > math.MaxInt64-r {
			return 0, bad
		}
		d += r
	}
	if neg {
		d = -d
	}
	return d, nil
}

// FormatDuration writes durations the way people type them: "24h", "10s",
// "1h30m", never "24h0m0s".
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
