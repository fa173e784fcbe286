package kernel

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The baseline section runs the other binary, first, in the same boot; the
// sections after it are the ones without a baseline.
func TestLatencyBaselineSection(t *testing.T) {
	plain := LatencyScenario(true)
	sc := plain.WithBaseline([]byte("old binary"))
	require.Equal(t, []byte("old binary"), sc.Files["selfprotect-base"])
	base := strings.Index(sc.Script, `"name":"latency-ebpf-base"`)
	ebpf := strings.Index(sc.Script, `"name":"latency-ebpf"}`)
	require.Positive(t, base)
	require.Greater(t, ebpf, base, "the baseline runs first")
	require.Contains(t, sc.Script[base:ebpf], `SP="/bin/selfprotect-base --state /var/lib/selfprotect/latency-ebpf-base`)
	require.NotContains(t, sc.Script[ebpf:], "selfprotect-base")
	require.True(t, strings.HasSuffix(sc.Script, plain.Script[strings.Index(plain.Script, "\n")+1:]))
	require.Empty(t, plain.Files["selfprotect-base"], "the plain scenario is not changed")
}
