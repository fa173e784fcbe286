package policy

import (
	"time"

	"github.com/selfprotect/selfprotect/strictyaml"
)

// formatDuration spells durations the way the configuration file does.
func formatDuration(d time.Duration) string { return strictyaml.FormatDuration(d) }
