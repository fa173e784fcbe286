package replay

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden report files in testdata/")

// TestReportGolden pins the text report of the anchors trace (the layout a
// human reads); regenerate with go test ./replay/ -run ReportGolden -update
// after a deliberate change and review the diff.
func TestReportGolden(t *testing.T) {
	var b strings.Builder
	require.NoError(t, goldenReport(t).WriteText(&b))
	const path = "testdata/anchors.report.txt"
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), b.String())
}
