package kernel

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The baseline section runs the other binary, first, in the same boot; the
// sections after it are the ones without a baseline.
func TestLatencyBaselineSection(t *testing.T) {
	plain := LatencyScenario(true, true)
	sc := plain.WithBaseline([]byte("old binary"), true)
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

// Without the probe nothing polls kpageflags: each deciding injection is
// still marked for the kernel-stamped figure, in every section.
func TestLatencyWithoutProbe(t *testing.T) {
	for _, withDaemon := range []bool{false, true} {
		with, without := LatencyScenario(withDaemon, true), LatencyScenario(withDaemon, false)
		require.Contains(t, with.Script, "wait-poisoned")
		require.NotContains(t, without.Script, "wait-poisoned")
		require.NotContains(t, without.WithBaseline([]byte("old"), false).Script, "wait-poisoned")
		sections := strings.Count(without.Script, "trace-start")
		require.Positive(t, sections)
		require.Equal(t, sections, strings.Count(without.Script, "inject-mem 1 $A mark="), "every section marks its deciding injections")
		require.Equal(t, strings.Count(with.Script, "mark="), strings.Count(without.Script, "mark="))
	}
}
