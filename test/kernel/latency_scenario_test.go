package kernel

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The baseline boot runs the other binary, through eBPF, in its own
// section; the plain eBPF boot never names it.
func TestLatencyBaseline(t *testing.T) {
	plain := LatencyScenario(LatencyEBPF, true)
	sc := LatencyBaseline([]byte("old binary"), true)
	require.Equal(t, []byte("old binary"), sc.Files["selfprotect-base"])
	require.Contains(t, sc.Script, `"name":"latency-ebpf-base"`)
	require.Contains(t, sc.Script, `SP="/bin/selfprotect-base --state /var/lib/selfprotect/latency-ebpf-base`)
	require.NotContains(t, sc.Script, `SP="selfprotect `)
	require.Equal(t, plain.Append, sc.Append)
	require.NotEqual(t, plain.Name, sc.Name, "the boot cache keys boots by name")
	require.Empty(t, plain.Files["selfprotect-base"], "the plain scenario is not changed")
	require.NotContains(t, plain.Script, "selfprotect-base")
}

// Every reader's boot and every CEC boot has a name of its own (the boot
// cache runs one boot per name), CEC on, the readers' CEC off, and the
// daemon only where a daemon is measured.
func TestLatencyScenarios(t *testing.T) {
	names := map[string]bool{}
	for _, path := range []string{LatencyEBPF, LatencyTracefs, LatencyFloor} {
		sc, cec := LatencyScenario(path, true), LatencyCECScenario(path, true)
		for _, s := range []Scenario{sc, cec} {
			require.False(t, names[s.Name], "two boots named %s", s.Name)
			names[s.Name] = true
		}
		require.Contains(t, sc.Append, "ras=cec_disable")
		require.NotContains(t, cec.Append, "ras=cec_disable")
		require.Contains(t, sc.Script, `"name":"latency-`+path+`"`)
		require.Equal(t, path != LatencyFloor, strings.Contains(sc.Script, "stamp-run"), path)
		require.Equal(t, path == LatencyFloor, strings.Contains(sc.Script, "min-isolator"), path)
		require.Equal(t, path == LatencyTracefs, strings.Contains(sc.Script, "RUNFLAGS=--no-ebpf"), path)
		require.NotContains(t, cec.Script, "stamp-run")
	}
	require.Panics(t, func() { LatencyScenario("cec", true) })
}

// Without the probe nothing polls kpageflags: each deciding injection is
// still marked for the kernel-stamped figure, in every boot.
func TestLatencyWithoutProbe(t *testing.T) {
	scenarios := func(probe bool) []Scenario {
		return []Scenario{LatencyCECScenario(LatencyEBPF, probe), LatencyScenario(LatencyEBPF, probe),
			LatencyScenario(LatencyTracefs, probe), LatencyScenario(LatencyFloor, probe), LatencyBaseline([]byte("old"), probe)}
	}
	with, without := scenarios(true), scenarios(false)
	for i := range with {
		require.Contains(t, with[i].Script, "wait-poisoned", with[i].Name)
		require.NotContains(t, without[i].Script, "wait-poisoned", without[i].Name)
		require.Equal(t, 1, strings.Count(without[i].Script, "trace-start"), without[i].Name)
		require.Equal(t, 1, strings.Count(without[i].Script, "inject-mem 1 $A mark="), "%s marks its deciding injections", without[i].Name)
		require.Equal(t, strings.Count(with[i].Script, "mark="), strings.Count(without[i].Script, "mark="))
	}
}
