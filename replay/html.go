package replay

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// WriteHTML writes the report as one self-contained page: inline SVG plots
// and styles, no scripts or fonts fetched from anywhere. A small inline
// script records, once the page has laid out, each plot's drawn size and
// mark count in the body's data-rendered attribute, so a headless browser
// can prove the plots rendered (TestHTMLInChromium).
func (r *Report) WriteHTML(w io.Writer) error {
	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		return err
	}
	data := struct {
		Title                         string
		Tradeoff, Leads, DIMMs, Table template.HTML
		Text                          string
	}{
		Title:    fmt.Sprintf("selfprotect replay: %d events, %d hosts", r.Events, r.Hosts),
		Tradeoff: template.HTML(r.tradeoffSVG()),
		Leads:    template.HTML(r.leadSVG()),
		DIMMs:    template.HTML(r.dimmSVG()),
		Text:     text.String(),
	}
	return htmlPage.Execute(w, data)
}

var htmlPage = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font: 14px sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
svg.plot { border: 1px solid #ccc; background: #fff; display: block; }
svg text { font: 11px sans-serif; fill: #333; }
pre { font: 12px monospace; background: #f6f6f6; padding: 12px; overflow-x: auto; }
p.note { color: #555; max-width: 60em; }
</style></head>
<body>
<h1>{{.Title}}</h1>
<h2>UE pages protected vs memory retired (one point per policy)</h2>
<p class="note">Up and to the left is better: a larger share of pages with an uncorrected error retired (or their DIMM flagged) before the error, for less RAM retired.</p>
{{.Tradeoff}}
<h2>Lead time before the uncorrected error</h2>
<p class="note">One dot per protected UE page: how long before its UE the policy retired it or flagged its DIMM (log scale). The bar marks the median.</p>
{{.Leads}}
<h2>Corrected errors per week, top DIMMs</h2>
<p class="note">The DIMMs with the most corrected errors (log scale); a red mark is the DIMM's first uncorrected error.</p>
{{.DIMMs}}
<h2>Report</h2>
<pre>{{.Text}}</pre>
<script>
window.addEventListener("load", function () {
  var out = [];
  document.querySelectorAll("svg.plot").forEach(function (s) {
    var b = s.getBBox();
    var marks = s.querySelectorAll(".mark").length;
    out.push(s.id + ":" + Math.round(b.width) + "x" + Math.round(b.height) + ":" + marks);
  });
  document.body.setAttribute("data-rendered", out.join(" "));
});
</script>
</body></html>
`))

// Plot geometry shared by the three plots.
const (
	plotW, plotH           = 720, 360
	padL, padR, padT, padB = 70, 20, 20, 50
)

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

func svgOpen(b *strings.Builder, id string, h int) {
	fmt.Fprintf(b, `<svg class="plot" id="%s" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`, id, plotW, h, plotW, h)
}

func esc(s string) string { return template.HTMLEscapeString(s) }

// axes draws the frame and a label on each axis.
func axes(b *strings.Builder, h int, xLabel, yLabel string) {
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, padL, h-padB, plotW-padR, h-padB)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, padL, padT, padL, h-padB)
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, (padL+plotW-padR)/2, h-12, esc(xLabel))
	fmt.Fprintf(b, `<text x="14" y="%d" text-anchor="middle" transform="rotate(-90 14 %d)">%s</text>`, (padT+h-padB)/2, (padT+h-padB)/2, esc(yLabel))
}

func (r *Report) tradeoffSVG() string {
	var b strings.Builder
	svgOpen(&b, "tradeoff", plotH)
	axes(&b, plotH, "memory retired, % of RAM", "UE pages protected, %")
	maxX := 0.0
	for _, p := range r.Policies {
		maxX = max(maxX, p.RetiredPercent)
	}
	if maxX == 0 {
		maxX = 1e-6
	}
	maxX *= 1.15
	x := func(v float64) float64 { return padL + v/maxX*float64(plotW-padL-padR) }
	y := func(v float64) float64 { return float64(plotH-padB) - v/100*float64(plotH-padT-padB) }
	for _, t := range []float64{0, 25, 50, 75, 100} {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`,
			padL, y(t), plotW-padR, y(t), padL-6, y(t)+4, t)
	}
	for i := 0; i <= 4; i++ {
		v := maxX * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%.2g</text>`, x(v), plotH-padB+16, v)
	}
	for i, p := range r.Policies {
		c := palette[i%len(palette)]
		px, py := x(p.RetiredPercent), y(100*p.ProtectedShare())
		fmt.Fprintf(&b, `<circle class="mark" cx="%.1f" cy="%.1f" r="6" fill="%s"><title>%s: %.2g%% of RAM, %.1f%% of UE pages</title></circle>`,
			px, py, c, esc(p.Name), p.RetiredPercent, 100*p.ProtectedShare())
		// Stagger labels so policies at the same point stay readable;
		// below the point when it sits at the top of the plot.
		ly := py - 8 - float64(i%3)*11
		if ly < padT+4 {
			ly = py + 18 + float64(i%3)*11
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`, px+9, ly, esc(p.Name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func (r *Report) leadSVG() string {
	rowH := 34
	h := padT + padB + rowH*max(len(r.Policies), 1)
	var b strings.Builder
	svgOpen(&b, "leads", h)
	axes(&b, h, "lead time (log scale)", "")
	// From one hour to two years.
	lo, hi := math.Log10(1), math.Log10(2*365*24)
	x := func(d time.Duration) float64 {
		v := math.Log10(max(d.Hours(), 1))
		return padL + 40 + (min(v, hi)-lo)/(hi-lo)*float64(plotW-padL-padR-40)
	}
	for _, t := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "1h"}, {24 * time.Hour, "1d"}, {7 * 24 * time.Hour, "1w"}, {30 * 24 * time.Hour, "30d"}, {365 * 24 * time.Hour, "1y"}} {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`,
			x(t.d), padT, x(t.d), h-padB, x(t.d), h-padB+16, t.name)
	}
	for i, p := range r.Policies {
		c := palette[i%len(palette)]
		cy := padT + rowH*i + rowH/2
		fmt.Fprintf(&b, `<text x="4" y="%d" text-anchor="start">%s</text>`, cy+4, esc(truncate(p.Name, 10)))
		for k, d := range p.UELead {
			jitter := float64(k%5-2) * 3
			fmt.Fprintf(&b, `<circle class="mark" cx="%.1f" cy="%.1f" r="3" fill="%s" fill-opacity="0.6"/>`, x(d), float64(cy)+jitter, c)
		}
		if len(p.UELead) > 0 {
			m := x(Percentile(p.UELead, 50))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000" stroke-width="2"/>`, m, cy-12, m, cy+12)
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func (r *Report) dimmSVG() string {
	var b strings.Builder
	svgOpen(&b, "dimms", plotH)
	axes(&b, plotH, "week", "corrected errors per week (log scale)")
	if len(r.TopDIMMs) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">no DIMM-labelled corrected errors in this history</text></svg>`, plotW/2, plotH/2)
		return b.String()
	}
	start, end := r.TopDIMMs[0].Start, r.TopDIMMs[0].Start
	var peak uint32 = 1
	for _, d := range r.TopDIMMs {
		if d.Start.Before(start) {
			start = d.Start
		}
		if e := d.Start.Add(time.Duration(len(d.Weekly)) * week); e.After(end) {
			end = e
		}
		for _, n := range d.Weekly {
			peak = max(peak, n)
		}
	}
	weeks := max(end.Sub(start)/week, 1)
	x := func(t time.Time) float64 {
		return padL + float64(t.Sub(start))/float64(weeks*week)*float64(plotW-padL-padR)
	}
	top := math.Log10(float64(peak)) + 0.1
	y := func(n uint32) float64 {
		return float64(plotH-padB) - math.Log10(float64(max(n, 1)))/top*float64(plotH-padT-padB)
	}
	for p := uint32(1); p <= peak; p *= 10 {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%d</text>`,
			padL, y(p), plotW-padR, y(p), padL-6, y(p)+4, p)
		if p > math.MaxUint32/10 {
			break
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="start">%s</text><text x="%d" y="%d" text-anchor="end">%s</text>`,
		padL, plotH-padB+16, start.Format("2006-01-02"), plotW-padR, plotH-padB+16, end.Format("2006-01-02"))
	for i, d := range r.TopDIMMs {
		c := palette[i%len(palette)]
		var pts []string
		for k, n := range d.Weekly {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(d.Start.Add(time.Duration(k)*week+week/2)), y(n)))
		}
		if len(pts) == 1 {
			fmt.Fprintf(&b, `<circle class="mark" cx="%s" cy="%s" r="4" fill="%s"/>`, strings.Split(pts[0], ",")[0], strings.Split(pts[0], ",")[1], c)
		} else {
			fmt.Fprintf(&b, `<polyline class="mark" fill="none" stroke="%s" stroke-width="2" points="%s"/>`, c, strings.Join(pts, " "))
		}
		if !d.FirstUE.IsZero() {
			ux := x(d.FirstUE)
			fmt.Fprintf(&b, `<line class="mark" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#d00" stroke-width="2"/>`, ux, padT, ux, padT+14)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s %s (%d)</text>`, plotW-padR-260, padT+14+14*i, c, esc(d.Host), esc(d.Label), d.Total)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
