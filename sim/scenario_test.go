package sim

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoadScenarioExamples(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.yaml")
	require.NoError(t, err)
	require.Len(t, files, 5)
	for _, f := range files {
		sc, err := LoadScenario(f)
		require.NoError(t, err, f)
		require.NotEmpty(t, sc.Steps)
		for _, st := range sc.Steps {
			require.Positive(t, st.Line)
		}
	}
}

func TestLoadScenarioErrors(t *testing.T) {
	tests := []struct{ file, want string }{
		{"unknown-field.yaml", "unknown-field.yaml:4: field bogus not found"},
		{"unknown-kind.yaml", `unknown-kind.yaml:4: step 2: kind "laser"`},
		{"time-goes-back.yaml", "time-goes-back.yaml:5: step 2: at 500ms is before"},
		{"bad-kernel.yaml", `bad-kernel.yaml:1: profile: bad simulator profile: kernel "5.4"`},
		{"bad-duration.yaml", "bad-duration.yaml:3: "},
		{"wrong-field-for-kind.yaml", "wrong-field-for-kind.yaml:3: step 1: kind memory-ce does not take pages"},
		{"edac-without-edac.yaml", "edac-without-edac.yaml:3: step 1: edac-ce needs a profile with edac: true"},
		{"no-steps.yaml", "no-steps.yaml:2: no steps"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			_, err := LoadScenario(filepath.Join("testdata/bad-scenarios", tc.file))
			require.ErrorIs(t, err, ErrBadScenario)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := LoadScenario("testdata/none.yaml")
	require.Error(t, err)
}

// recorder is an Injector that remembers calls and the fake time of each.
type recorder struct {
	clock *time.Time
	calls []string
	at    []time.Duration
	start time.Time
}

func (r *recorder) note(s string) error {
	r.calls = append(r.calls, s)
	r.at = append(r.at, r.clock.Sub(r.start))
	return nil
}
func (r *recorder) InjectMCE(e MCE) error { return r.note("mce") }
func (r *recorder) InjectMemoryCE(addr uint64, count, cpu int) error {
	return r.note("memory-ce")
}
func (r *recorder) InjectMemoryCENoSyndrome(addr uint64, count, cpu int) error {
	return r.note("memory-ce-no-syndrome")
}
func (r *recorder) InjectMemoryUE(addr uint64, cpu int) error { return r.note("memory-ue") }
func (r *recorder) InjectCacheCE(cpu, count int) error        { return r.note("cache-ce") }
func (r *recorder) InjectEDAC(mc, dimm int, ce uint64) error  { return r.note("edac") }
func (r *recorder) Storm(n int, pages []uint64) error         { return r.note("storm") }
func (r *recorder) KernelMemoryFailure(addr uint64) error     { return r.note("memory-failure") }

func TestPlayerTiming(t *testing.T) {
	sc, err := ParseScenario("t.yaml", []byte(`profile: {edac: true}
steps:
  - inject: {kind: cache-ce, cpu: 1}
  - at: 2s
    inject: {kind: memory-ce, addr: 0x1000}
  - after: 500ms
    inject: {kind: memory-ue, addr: 0x1000}
  - inject: {kind: edac-ce, mc: 0, dimm: 1, count: 3}
  - after: 1s
    inject: {kind: storm, count: 5, pages: [0x1000]}
`))
	require.NoError(t, err)
	now := time.Unix(1000, 0)
	rec := &recorder{clock: &now, start: now}
	p := Player{Injector: rec, Now: func() time.Time { return now },
		Sleep: func(_ context.Context, d time.Duration) error { now = now.Add(max(d, 0)); return nil }}
	require.NoError(t, p.Play(context.Background(), sc))
	require.Equal(t, []string{"cache-ce", "memory-ce", "memory-ue", "edac", "storm"}, rec.calls)
	require.Equal(t, []time.Duration{0, 2 * time.Second, 2500 * time.Millisecond, 2500 * time.Millisecond, 3500 * time.Millisecond}, rec.at)
}

func TestPlayOnMachine(t *testing.T) {
	sc, err := LoadScenario("testdata/scenarios/edac-counter-jump.yaml")
	require.NoError(t, err)
	m := testMachine(t, sc.Profile)
	require.NoError(t, m.Play(context.Background(), sc))
	n, err := readUint(m.Paths().SysPath("devices/system/edac/mc/mc1/dimm0/dimm_ce_count"))
	require.NoError(t, err)
	require.Equal(t, uint64(1000), n)

	sc, err = ParseScenario("off.yaml", []byte("profile: {}\nsteps:\n  - inject: {kind: cache-ce, cpu: 3}\n"))
	require.NoError(t, err)
	m.online[3] = false
	require.ErrorContains(t, m.Play(context.Background(), sc), "off.yaml:3: step 1: inject mce: cpu 3: cpu is offline")
}

func FuzzParseScenario(f *testing.F) {
	for _, g := range []string{"testdata/scenarios/*.yaml", "testdata/bad-scenarios/*.yaml"} {
		files, _ := filepath.Glob(g)
		for _, file := range files {
			b, err := readFileBytes(file)
			if err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := ParseScenario("fuzz.yaml", data)
		if err != nil {
			require.ErrorIs(t, err, ErrBadScenario)
			return
		}
		for _, st := range sc.Steps {
			require.NotNil(t, st.Inject)
		}
	})
}
