package packaging

import (
	"bufio"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// unitSettings reads a systemd unit into key -> values (keys repeat).
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "unit line without '=': %q", line)
		out[k] = append(out[k], v)
	}
	require.NoError(t, sc.Err())
	return out
}

var readmeCapRow = regexp.MustCompile("(?m)^\\| `(CAP_[A-Z_]+)` \\|")

// The README's capability table and the unit's bounding set name the same
// capabilities: one cannot change without the other.
func TestUnitCapabilitiesMatchREADME(t *testing.T) {
	unit := unitSettings(t, "selfprotect.service")
	require.Len(t, unit["CapabilityBoundingSet"], 1)
	got := strings.Fields(unit["CapabilityBoundingSet"][0])
	sort.Strings(got)

	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	var documented []string
	for _, m := range readmeCapRow.FindAllStringSubmatch(string(readme), -1) {
		documented = append(documented, m[1])
	}
	sort.Strings(documented)
	require.Equal(t, documented, got, "README capability table vs the unit's CapabilityBoundingSet")
	require.Equal(t, []string{""}, unit["AmbientCapabilities"], "a uid-0 service needs no ambient capabilities")
}

// The sandbox settings the README promises are in the unit, and the only
// writable kernel paths are the ones the actuators and the trace instance
// use.
func TestUnitSandbox(t *testing.T) {
	unit := unitSettings(t, "selfprotect.service")
	for key, want := range map[string]string{
		"Type":                  "notify",
		"ExecStart":             "/usr/sbin/selfprotect run",
		"ProtectSystem":         "strict",
		"ProtectKernelTunables": "yes",
		"NoNewPrivileges":       "yes",
		"PrivateTmp":            "yes",
		"ProtectHome":           "yes",
		"StateDirectory":        "selfprotect",
		"StateDirectoryMode":    "0700",
		"RuntimeDirectory":      "selfprotect",
		"MemoryMax":             "256M",
	} {
		require.Equal(t, []string{want}, unit[key], key)
	}
	require.NotEmpty(t, unit["WatchdogSec"])
	require.Equal(t, []string{
		"-/sys/devices/system/memory/soft_offline_page",
		"-/sys/devices/system/memory/hard_offline_page",
		"/sys/devices/system/cpu",
		"-/sys/kernel/tracing/instances",
		"-/sys/kernel/debug/tracing/instances",
	}, unit["ReadWritePaths"])
	require.Equal(t, []string{"AF_UNIX AF_INET AF_INET6"}, unit["RestrictAddressFamilies"])
}
