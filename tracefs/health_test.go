package tracefs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseStatsRealCaptures(t *testing.T) {
	for _, cell := range captureCells {
		for file, entries := range map[string]uint64{"stats-cpu0.txt": 0, "stats-cpu1.txt": 3} {
			t.Run(cell+"/"+file, func(t *testing.T) {
				p := filepath.Join("testdata/pages", cell, file)
				data, err := os.ReadFile(p)
				require.NoError(t, err)
				st, err := ParseStats(p, data)
				require.NoError(t, err)
				require.Equal(t, entries, st.Entries)
				require.Zero(t, st.Overrun)
				require.Zero(t, st.CommitOverrun)
				require.Zero(t, st.Dropped)
				require.Zero(t, st.Read)
			})
		}
	}
}

func TestParseStats(t *testing.T) {
	tests := []struct {
		name, text string
		want       CPUStats
		wantErr    string
	}{
		{"losses", "entries: 10\noverrun: 12\ncommit overrun: 1\nbytes: 4000\noldest event ts:  1.5\nnow ts:  2.0\ndropped events: 7\nread events: 3\n",
			CPUStats{Entries: 10, Overrun: 12, CommitOverrun: 1, Bytes: 4000, Dropped: 7, Read: 3}, ""},
		{"bad number", "overrun: many\n", CPUStats{}, "s:1: overrun: strconv.ParseUint"},
		{"nothing", "hello\n", CPUStats{}, "s: no counters"},
		{"empty", "", CPUStats{}, "s: no counters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := ParseStats("s", []byte(tc.text))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, st)
		})
	}
}

func FuzzParseStats(f *testing.F) {
	for _, cell := range captureCells {
		b, err := os.ReadFile(filepath.Join("testdata/pages", cell, "stats-cpu1.txt"))
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte("overrun: 18446744073709551616\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseStats("fuzz", data)
	})
}

// statsWith rewrites the real stats text with other loss counters.
func statsWith(t *testing.T, overrun, dropped string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/pages/6.12-amd/stats-cpu1.txt")
	require.NoError(t, err)
	s := strings.Replace(string(b), "\noverrun: 0\n", "\noverrun: "+overrun+"\n", 1)
	s = strings.Replace(s, "dropped events: 0\n", "dropped events: "+dropped+"\n", 1)
	require.NotEqual(t, string(b), s)
	return s
}

func TestHealth(t *testing.T) {
	tests := []struct {
		name          string
		before, after func(t *testing.T, ft *fixtureTree) // around OpenInstance
		wantProblems  []string
		wantPresent   bool
		wantOn        bool
		wantDisabled  []string
		wantOverrun   uint64
		wantDropped   uint64
	}{
		{name: "healthy", wantPresent: true, wantOn: true},
		{name: "tracing off", after: func(t *testing.T, ft *fixtureTree) {
			ft.writeFile(t, "selfprotect", "tracing_on", "0\n")
		}, wantPresent: true, wantProblems: []string{"tracing_on is 0 in instance selfprotect"}},
		{name: "event disabled", after: func(t *testing.T, ft *fixtureTree) {
			ft.writeFile(t, "selfprotect", "events/mce/mce_record/enable", "0\n")
		}, wantPresent: true, wantOn: true, wantDisabled: []string{"mce/mce_record"},
			wantProblems: []string{"event mce/mce_record disabled behind our back"}},
		{name: "soft-enabled event counts as on", after: func(t *testing.T, ft *fixtureTree) {
			ft.writeFile(t, "selfprotect", "events/mce/mce_record/enable", "1*\n")
		}, wantPresent: true, wantOn: true},
		{name: "event gone", after: func(t *testing.T, ft *fixtureTree) {
			require.NoError(t, os.RemoveAll(filepath.Join(ft.instanceDir("selfprotect"), "events/ras/mc_event")))
		}, wantPresent: true, wantOn: true, wantDisabled: []string{"ras/mc_event"},
			wantProblems: []string{"event ras/mc_event is gone from instance selfprotect"}},
		{name: "overrun and dropped", after: func(t *testing.T, ft *fixtureTree) {
			ft.writeFile(t, "selfprotect", "per_cpu/cpu1/stats", statsWith(t, "12", "0"))
			ft.writeFile(t, "selfprotect", "per_cpu/cpu3/stats", statsWith(t, "0", "4"))
		}, wantPresent: true, wantOn: true, wantOverrun: 12, wantDropped: 4,
			wantProblems: []string{"cpu1: 12 events overrun", "cpu3: 4 events dropped"}},
		{name: "losses of a crashed run are not ours", before: func(t *testing.T, ft *fixtureTree) {
			ft.writeFile(t, "selfprotect", "per_cpu/cpu2/stats", statsWith(t, "5", "1"))
		}, after: func(t *testing.T, ft *fixtureTree) {
			ft.writeFile(t, "selfprotect", "per_cpu/cpu2/stats", statsWith(t, "17", "1"))
		}, wantPresent: true, wantOn: true, wantOverrun: 12, wantProblems: []string{"cpu2: 12 events overrun"}},
		{name: "unreadable stats", after: func(t *testing.T, ft *fixtureTree) {
			ft.writeFile(t, "selfprotect", "per_cpu/cpu0/stats", "overrun: lots\n")
		}, wantPresent: true, wantOn: true,
			wantProblems: []string{"cpu0: cannot read ring buffer stats: " + "PATH:1: overrun: strconv.ParseUint: parsing \"lots\": invalid syntax"}},
		{name: "instance deleted", after: func(t *testing.T, ft *fixtureTree) {
			require.NoError(t, os.RemoveAll(ft.instanceDir("selfprotect")))
		}, wantProblems: []string{"tracefs instance selfprotect is gone"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ft := newFixtureTree(t, "6.12")
			ft.populate(t, "selfprotect")
			if tc.before != nil {
				tc.before(t, ft)
			}
			inst, err := OpenInstance(ft.paths, Options{}, quietLogger())
			require.NoError(t, err)
			defer inst.Close()
			if tc.after != nil {
				tc.after(t, ft)
			}
			h := inst.Health()
			require.Equal(t, tc.wantPresent, h.InstancePresent)
			require.Equal(t, tc.wantOn, h.TracingOn)
			require.Equal(t, tc.wantDisabled, h.DisabledEvents)
			require.Equal(t, tc.wantOverrun, h.Overrun)
			require.Equal(t, tc.wantDropped, h.Dropped)
			require.Equal(t, len(tc.wantProblems) == 0, h.OK())
			require.Len(t, h.Problems, len(tc.wantProblems), "%q", h.Problems)
			stats0 := filepath.Join(inst.Dir(), "per_cpu/cpu0/stats")
			for i, want := range tc.wantProblems {
				require.True(t, strings.HasPrefix(h.Problems[i], strings.ReplaceAll(want, "PATH", stats0)), "got %q, want %q", h.Problems[i], want)
			}
			// Per-CPU ring-buffer problems lose some records; the others
			// lose every record.
			require.Equal(t, h.Problems, append(append([]string(nil), h.Blind...), h.Lossy...))
			for _, p := range h.Lossy {
				require.True(t, strings.HasPrefix(p, "cpu"), "lossy: %q", p)
			}
			// Overruns and drops, told apart from unreadable stats.
			var lost []string
			for _, p := range h.Lossy {
				if strings.HasSuffix(p, " overrun") || strings.HasSuffix(p, " dropped") {
					lost = append(lost, p)
				}
			}
			require.Equal(t, lost, h.Lost)
			for _, p := range h.Blind {
				require.False(t, strings.HasPrefix(p, "cpu"), "blind: %q", p)
			}
		})
	}
}
