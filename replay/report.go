package replay

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a replay.
type Report struct {
	Hosts      int
	Events     uint64
	From, To   time.Time
	TotalPages uint64 // RAM of every host in the trace, in 4 KiB pages
	Policies   []PolicyReport
	// TopDIMMs are the DIMMs with the most corrected errors, most first.
	TopDIMMs []DIMMSeries
}

// PolicyReport is what one policy would have done.
type PolicyReport struct {
	Name  string
	Notes []string
	// EventsSeen counts events the mimicked tool could observe.
	EventsSeen uint64
	// Cases counts opened cases by rule.
	Cases map[string]int
	// PagesRetired counts pages this policy took out of service (soft,
	// row and hard offlines; not the kernel's own UE poisoning).
	PagesRetired uint64
	PagesRefused uint64
	CPUsOffline  uint64
	CPUsRefused  uint64
	// Refusals counts refused actions by the budget they broke (one action
	// may break several).
	Refusals map[string]int
	// AlreadyIsolated counts targets an earlier case (or the kernel) had
	// already taken out: never acting twice.
	AlreadyIsolated uint64
	Failed          uint64
	// RetiredPercent is PagesRetired over the RAM of every host.
	RetiredPercent        float64
	MaxHostRetiredPercent float64
	MaxHost               string

	DIMMCases            int
	DIMMsWithUE          int
	DIMMsFlaggedBeforeUE int
	DIMMLead             []time.Duration // sorted

	// UEPages counts pages with an uncorrected memory error (first one per
	// page and host); protected ones were retired, or their DIMM flagged,
	// before it.
	UEPages         int
	ProtectedByPage int
	ProtectedByDIMM int
	UELead          []time.Duration // sorted
}

func newPolicyReport(p *Policy) *PolicyReport {
	return &PolicyReport{Name: p.Name, Notes: p.Notes, Cases: map[string]int{}, Refusals: map[string]int{}}
}

// ProtectedShare is the share of UE pages protected in advance, 0-1.
func (p *PolicyReport) ProtectedShare() float64 {
	if p.UEPages == 0 {
		return 0
	}
	return float64(p.ProtectedByPage+p.ProtectedByDIMM) / float64(p.UEPages)
}

// WriteText prints the report as a table, one column per policy.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "replayed %d events from %d hosts", r.Events, r.Hosts)
	if r.Events > 0 {
		fmt.Fprintf(w, ", %s to %s", r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "; %s of RAM in all\n\n", formatBytes(r.TotalPages*4096))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(p *PolicyReport) string) {
		cells := []string{label}
		for i := range r.Policies {
			cells = append(cells, f(&r.Policies[i]))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	row("policy", func(p *PolicyReport) string { return p.Name })
	row("events seen", func(p *PolicyReport) string { return fmt.Sprint(p.EventsSeen) })
	row("cases", func(p *PolicyReport) string { return formatCases(p.Cases) })
	row("pages retired", func(p *PolicyReport) string { return fmt.Sprint(p.PagesRetired) })
	row("memory retired", func(p *PolicyReport) string {
		return fmt.Sprintf("%s (%s of RAM)", formatMiB(p.PagesRetired*4096), formatPercent(p.RetiredPercent))
	})
	row("worst host", func(p *PolicyReport) string {
		if p.MaxHost == "" {
			return "-"
		}
		return fmt.Sprintf("%s %s", formatPercent(p.MaxHostRetiredPercent), p.MaxHost)
	})
	row("pages refused", func(p *PolicyReport) string { return fmt.Sprint(p.PagesRefused) })
	row("CPUs offlined", func(p *PolicyReport) string { return fmt.Sprint(p.CPUsOffline) })
	row("CPUs refused", func(p *PolicyReport) string { return fmt.Sprint(p.CPUsRefused) })
	row("refusals by budget", func(p *PolicyReport) string { return formatCases(p.Refusals) })
	row("already isolated", func(p *PolicyReport) string { return fmt.Sprint(p.AlreadyIsolated) })
	row("DIMM cases", func(p *PolicyReport) string { return fmt.Sprint(p.DIMMCases) })
	row("DIMMs with a UE", func(p *PolicyReport) string { return fmt.Sprint(p.DIMMsWithUE) })
	row("  flagged before it", func(p *PolicyReport) string {
		return fmt.Sprintf("%d (%s)", p.DIMMsFlaggedBeforeUE, share(p.DIMMsFlaggedBeforeUE, p.DIMMsWithUE))
	})
	row("  lead time p10/p50/p90", func(p *PolicyReport) string { return formatLeads(p.DIMMLead) })
	row("UE pages", func(p *PolicyReport) string { return fmt.Sprint(p.UEPages) })
	row("  protected before UE", func(p *PolicyReport) string {
		return fmt.Sprintf("%d (%s)", p.ProtectedByPage+p.ProtectedByDIMM, share(p.ProtectedByPage+p.ProtectedByDIMM, p.UEPages))
	})
	row("    page retired", func(p *PolicyReport) string { return fmt.Sprint(p.ProtectedByPage) })
	row("    DIMM flagged", func(p *PolicyReport) string { return fmt.Sprint(p.ProtectedByDIMM) })
	row("  lead time p10/p50/p90", func(p *PolicyReport) string { return formatLeads(p.UELead) })
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range r.Policies {
		for _, n := range p.Notes {
			fmt.Fprintf(w, "\n%s: %s", p.Name, n)
		}
	}
	if len(r.Policies) > 0 {
		fmt.Fprintln(w)
	}
	return nil
}

func share(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

func formatCases(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// Percentile of sorted durations (nearest rank).
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted)) + 0.5)
	i = min(max(i-1, 0), len(sorted)-1)
	return sorted[i]
}

func formatLeads(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	return fmt.Sprintf("%s/%s/%s", formatLead(Percentile(d, 10)), formatLead(Percentile(d, 50)), formatLead(Percentile(d, 90)))
}

func formatLead(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.0fd", d.Hours()/24)
	case d >= time.Hour:
		return fmt.Sprintf("%.0fh", d.Hours())
	case d >= time.Minute:
		return fmt.Sprintf("%.0fm", d.Minutes())
	}
	return fmt.Sprintf("%.0fs", d.Seconds())
}

// formatPercent keeps two significant digits: fleet-wide shares of RAM
// retired are tiny, and 0.00000% would hide the difference between
// policies.
func formatPercent(p float64) string {
	if p == 0 {
		return "0%"
	}
	return strconv.FormatFloat(p, 'g', 2, 64) + "%"
}

func formatMiB(b uint64) string {
	if b < 1<<20 {
		return fmt.Sprintf("%d KiB", b>>10)
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func formatBytes(b uint64) string {
	const gib = 1 << 30
	if b >= 1<<40 {
		return fmt.Sprintf("%.1f TiB", float64(b)/(1<<40))
	}
	return fmt.Sprintf("%.1f GiB", float64(b)/gib)
}
