package policy

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// A reload must fail at once on anything but a bounded regular file: a FIFO
// would block the open (and the daemon's loop) until someone writes to it.
func TestLoadRefusesNonRegularAndHugeFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	huge := filepath.Join(dir, "huge.yaml")
	require.NoError(t, os.WriteFile(huge, []byte("# "+strings.Repeat("x", MaxPolicyBytes)+"\n"), 0o600))
	link := filepath.Join(dir, "link.yaml")
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte("mode: dry-run\n"), 0o600))
	require.NoError(t, os.Symlink(good, link))

	tests := []struct {
		path, wantErr string
	}{
		{fifo, "not a regular file"},
		{dir, "not a regular file"},
		{huge, "larger than 1048576 bytes"},
		{"/dev/null", "not a regular file"},
	}
	for _, tc := range tests {
		_, err := Load(tc.path)
		require.ErrorContains(t, err, tc.wantErr, tc.path)
		require.ErrorContains(t, err, tc.path, "the error names the file")
	}
	// Configuration management often installs the policy as a symlink.
	cfg, err := Load(link)
	require.NoError(t, err)
	require.Equal(t, ModeDryRun, cfg.Mode)
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{name: "defaults", yaml: ""},
		{
			name: "page threshold beyond a whole-window storm",
			yaml: "rules:\n  page:\n    threshold: 500000\n    window: 1m\n",
			want: []string{"p.yaml:3: rules.page.threshold: 500000 errors within 1m is more than arrive at the storm rate (2000/s)"},
		},
		{
			name: "the same rule disabled says nothing",
			yaml: "rules:\n  page:\n    enabled: false\n    threshold: 500000\n    window: 1m\n",
		},
		{
			name: "cpu and dimm",
			yaml: "rules:\n  cpu:\n    threshold: 130000\n    window: 1m\n  dimm:\n    errors: 200000\n    window: 90s\n",
			want: []string{"p.yaml:6: rules.dimm.errors", "p.yaml:3: rules.cpu.threshold"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("p.yaml", []byte(tc.yaml))
			require.NoError(t, err)
			got := cfg.Warnings()
			require.Len(t, got, len(tc.want), "%q", got)
			for i, w := range tc.want {
				require.Contains(t, got[i], w)
			}
		})
	}
}
