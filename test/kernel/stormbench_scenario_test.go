package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	policypkg "github.com/selfprotect/selfprotect/policy"
)

// The storm bench's baseline section runs the other binary first in the
// same boot; the eBPF and tracefs sections after it are unchanged.
func TestStormBenchBaselineSection(t *testing.T) {
	plain := StormBenchScenario(StormBenchOptions{})
	sc := StormBenchScenario(StormBenchOptions{Baseline: []byte("old binary")})
	require.Equal(t, []byte("old binary"), sc.Files["selfprotect-base"])
	require.Empty(t, plain.Files["selfprotect-base"])
	base := strings.Index(sc.Script, `"name":"storm-ebpf-base"`)
	ebpf := strings.Index(sc.Script, `"name":"storm-ebpf"}`)
	require.Positive(t, base)
	require.Greater(t, ebpf, base, "the baseline runs first")
	require.Contains(t, sc.Script[base:ebpf], `SP="/bin/selfprotect-base --state /var/lib/selfprotect/storm-ebpf-base`)
	require.NotContains(t, sc.Script[ebpf:], "selfprotect-base")
	require.True(t, strings.HasSuffix(sc.Script, plain.Script[strings.Index(plain.Script, "\n")+1:]))
}

// Without isolation the policy turns the page rule off and keeps the
// storm rule.
func TestStormBenchWithoutIsolation(t *testing.T) {
	plain := string(StormBenchScenario(StormBenchOptions{}).Files["storm.yaml"])
	off := string(StormBenchScenario(StormBenchOptions{NoIsolation: true}).Files["storm.yaml"])
	require.NotContains(t, plain, "page:")
	require.Equal(t, plain+"  page: {enabled: false}\n", off)
	cfg := filepath.Join(t.TempDir(), "storm.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(off), 0o644))
	p, err := policypkg.Load(cfg)
	require.NoError(t, err)
	require.False(t, p.Rules.Page.Enabled)
	require.True(t, p.Rules.Storm.Enabled)
}

func TestThreadSwitches(t *testing.T) {
	tests := []struct {
		name, before, after string
		per                 string
		vol, nonvol         float64
		err                 string
	}{
		{name: "deltas per thread", before: "10:5/1 11:100/7", after: "10:9/1 11:160/10",
			per: "10:4/0 11:60/3", vol: 64, nonvol: 3},
		{name: "a thread born in between counts from zero", before: "10:5/1", after: "12:3/2 10:6/1",
			per: "10:1/0 12:3/2", vol: 4, nonvol: 2},
		{name: "a thread that ended is left out", before: "10:5/1 11:8/8", after: "10:6/1",
			per: "10:1/0", vol: 1},
		{name: "garbage", before: "10:5", after: "10:6/1", err: "want tid:voluntary/nonvoluntary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			per, vol, nonvol, err := threadSwitches(tc.before, tc.after)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.per, per)
			require.Equal(t, tc.vol, vol)
			require.Equal(t, tc.nonvol, nonvol)
		})
	}
}
