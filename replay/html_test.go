package replay

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func goldenReport(t *testing.T) *Report {
	t.Helper()
	return replayFile(t, "testdata/anchors.jsonl", builtin(t, "selfprotect", "rasdaemon", "mcelog", "cec", "cec-2", "fma")...)
}

// TestHTMLSelfContained: the page fetches nothing (no src=, href= or url(
// to anywhere) and holds the three plots with one mark per policy, per
// protected UE page and per top DIMM.
func TestHTMLSelfContained(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, goldenReport(t).WriteHTML(&b))
	page := b.String()
	for _, bad := range []string{"src=", "href=", "url(", "@import", "http://", "https://"} {
		if bad == "http://" {
			// The SVG namespace is a name, not a fetch.
			page2 := strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
			require.NotContains(t, page2, bad)
			continue
		}
		require.NotContains(t, page, bad)
	}
	require.Equal(t, 6, strings.Count(extractSVG(t, page, "tradeoff"), `class="mark"`))
	// Protected UE pages: selfprotect 1, mcelog 1, cec-2 2, fma 3.
	require.Equal(t, 7, strings.Count(extractSVG(t, page, "leads"), `class="mark"`))
	// D2 and D1: one week each (a dot) and a first-UE mark each.
	require.Equal(t, 4, strings.Count(extractSVG(t, page, "dimms"), `class="mark"`))
}

func extractSVG(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `id="`+id+`"`)
	require.GreaterOrEqual(t, i, 0, id)
	j := strings.Index(page[i:], "</svg>")
	require.Greater(t, j, 0)
	return page[i : i+j]
}

// chromium finds Debian's headless browser. make html-check installs it
// and sets SELFPROTECT_CHROMIUM=1, which turns its absence into a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SELFPROTECT_CHROMIUM") == "1" {
		t.Fatal("chromium not found (apt-get install chromium)")
	}
	t.Skip("HTML REPORT NOT CHECKED IN A BROWSER: chromium not found; run make html-check")
	return ""
}

// TestHTMLInChromium renders the report in headless Chromium: the page's
// own script must report every plot laid out with a non-empty box and the
// expected number of marks, and the screenshot must show the plots'
// colours. The PNG is kept in $SELFPROTECT_ARTIFACTS (or the test's temp
// directory) for a human to look at.
func TestHTMLInChromium(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	require.NoError(t, err)
	require.NoError(t, goldenReport(t).WriteHTML(f))
	require.NoError(t, f.Close())

	run := func(args ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--no-first-run", "--user-data-dir=" + filepath.Join(dir, "profile")}
		out, err := exec.CommandContext(ctx, bin, append(append(base, args...), "file://"+page)...).Output()
		require.NoError(t, err, "chromium %v", args)
		return out
	}

	dom := run("--virtual-time-budget=5000", "--dump-dom")
	m := regexp.MustCompile(`data-rendered="([^"]*)"`).FindSubmatch(dom)
	require.NotNil(t, m, "the page's script did not run: no data-rendered attribute")
	want := map[string]int{"tradeoff": 6, "leads": 7, "dimms": 4}
	got := map[string]int{}
	for _, plot := range strings.Fields(string(m[1])) {
		parts := strings.Split(plot, ":")
		require.Len(t, parts, 3, plot)
		wh := strings.Split(parts[1], "x")
		w, _ := strconv.Atoi(wh[0])
		h, _ := strconv.Atoi(wh[1])
		require.Greater(t, w, 100, "plot %s drawn %s wide", parts[0], parts[1])
		require.Greater(t, h, 50, "plot %s drawn %s high", parts[0], parts[1])
		got[parts[0]], _ = strconv.Atoi(parts[2])
	}
	require.Equal(t, want, got, "marks laid out per plot")

	artifacts := os.Getenv("SELFPROTECT_ARTIFACTS")
	if artifacts == "" {
		artifacts = dir
	}
	require.NoError(t, os.MkdirAll(artifacts, 0o755))
	shot := filepath.Join(artifacts, "replay-report.png")
	run("--window-size=900,1800", "--screenshot="+shot)
	pf, err := os.Open(shot)
	require.NoError(t, err)
	defer pf.Close()
	img, err := png.Decode(pf)
	require.NoError(t, err)
	// The palette's first colours (policy points, lead dots) must be on
	// screen: a blank or unstyled page has none of them.
	seen := map[[3]uint8]bool{}
	bnd := img.Bounds()
	for yy := bnd.Min.Y; yy < bnd.Max.Y; yy++ {
		for xx := bnd.Min.X; xx < bnd.Max.X; xx++ {
			r, g, b, _ := img.At(xx, yy).RGBA()
			seen[[3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}] = true
		}
	}
	for _, c := range [][3]uint8{{0x1f, 0x77, 0xb4}, {0xff, 0x7f, 0x0e}, {0x2c, 0xa0, 0x2c}} {
		require.True(t, seen[c], "colour %x not in the screenshot %s", c, shot)
	}
	t.Logf("screenshot: %s", shot)
}
