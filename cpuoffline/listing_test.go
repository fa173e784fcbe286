package cpuoffline

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// treeFromListing recreates a kernel-data sysfs listing ("path/" for a
// directory, "path = value" for a file, "path =" plus "    | " lines for a
// multi-line file) under root, so the readers run on a real captured layout
// through kpath.OS.
func treeFromListing(t *testing.T, listing, root string) {
	t.Helper()
	f, err := os.Open(listing)
	require.NoError(t, err)
	defer f.Close()
	var current string // a multi-line file being filled
	var body strings.Builder
	flush := func() {
		if current != "" {
			require.NoError(t, os.WriteFile(current, []byte(body.String()), 0o644))
			current = ""
			body.Reset()
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "    | "); ok {
			body.WriteString(rest + "\n")
			continue
		}
		flush()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, value, isFile := strings.Cut(line, " =")
		if strings.HasSuffix(line, " (read failed: Permission denied)") || strings.HasSuffix(line, " (read failed: Input/output error)") {
			path, isFile, value = strings.SplitN(line, " (read failed", 2)[0], true, ""
		}
		full := filepath.Join(root, path)
		if !isFile {
			require.NoError(t, os.MkdirAll(strings.TrimSuffix(full, "/"), 0o755))
			continue
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		if value == "" {
			current = full
			continue
		}
		require.NoError(t, os.WriteFile(full, []byte(strings.TrimPrefix(value, " ")+"\n"), 0o644))
	}
	flush()
	require.NoError(t, sc.Err())
}
