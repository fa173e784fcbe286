package policy

import "time"

// Warnings lists settings that are valid but almost certainly not what the
// operator meant: a rule whose count cannot be reached within its window
// unless the machine stays in an error storm for the whole window, which
// leaves the daemon watching and never acting. Each names file:line when
// the policy came from a file.
func (c *Config) Warnings() []string {
	var out []string
	r := &c.Rules
	for _, w := range []struct {
		field   string
		enabled bool
		n       int
		window  time.Duration
	}{
		{"rules.page.threshold", r.Page.Enabled, r.Page.Threshold, r.Page.Window},
		{"rules.dimm.errors", r.DIMM.Enabled, r.DIMM.Errors, r.DIMM.Window},
		{"rules.cpu.threshold", r.CPU.Enabled, r.CPU.Threshold, r.CPU.Window},
	} {
		if !w.enabled || w.window <= 0 {
			continue
		}
		reach := r.Storm.Rate * w.window.Seconds()
		if float64(w.n) > reach {
			out = append(out, c.origin.Errorf(w.field,
				"%d errors within %s is more than arrive at the storm rate (%v/s) in that window: the rule would trip only after a storm as long as the window",
				w.n, formatDuration(w.window), r.Storm.Rate).Error())
		}
	}
	return out
}
