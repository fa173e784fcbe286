package tracefs

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/kpath"
)

func TestOpenInstanceTakesOverAndSetsUp(t *testing.T) {
	for _, kernel := range []string{"6.1", "6.12"} {
		t.Run(kernel, func(t *testing.T) {
			ft := newFixtureTree(t, kernel)
			rec := &recordingFS{root: ft.instanceDir("selfprotect")}
			inst := ft.open(t, Options{FS: rec})

			require.Equal(t, ft.instanceDir("selfprotect"), inst.Dir())
			require.Equal(t, []int{0, 1, 2, 3}, inst.CPUs())
			require.Equal(t, []string{"mce/mce_record", "ras/aer_event", "ras/arm_event", "ras/extlog_mem_event",
				"ras/mc_event", "ras/memory_failure_event", "ras/non_standard_event"}, inst.Events())
			require.Equal(t, "1\n", ft.read(t, "selfprotect", "tracing_on"))
			require.Equal(t, "1\n", ft.read(t, "selfprotect", "events/mce/mce_record/enable"))
			require.Equal(t, "1\n", ft.read(t, "selfprotect", "events/ras/mc_event/enable"))
			require.Equal(t, "0\n", ft.read(t, "selfprotect", "events/ras/enable"), "the system-wide enable is not an event")
			require.Contains(t, rec.Writes(), "buffer_size_kb=64\n")
			require.Contains(t, rec.Writes(), "buffer_percent=0\n")
			// tracing goes on only after every event is enabled.
			require.Equal(t, "tracing_on=1\n", rec.Writes()[len(rec.Writes())-1])

			f, ok := inst.Formats().ByName("mce/mce_record")
			require.True(t, ok)
			require.Equal(t, uint16(113), f.ID)
			mf, ok := inst.Formats().ByName("ras/memory_failure_event")
			require.True(t, ok)
			byID, ok := inst.Formats().ByID(mf.ID)
			require.True(t, ok)
			require.Same(t, mf, byID)
			require.Equal(t, 7, inst.Formats().Len())

			require.NoError(t, inst.Close())
			require.NoDirExists(t, inst.Dir())
			require.Contains(t, rec.Writes(), "events/mce/mce_record/enable=0\n")
			require.Contains(t, rec.Writes(), "tracing_on=0\n")
			require.NoError(t, inst.Close(), "Close twice is harmless")
		})
	}
}

// The simulator fills a new instance from another process, after mkdir.
func TestOpenInstanceWaitsForAsyncPopulate(t *testing.T) {
	ft := newFixtureTree(t, "6.12")
	dir := ft.instanceDir("selfprotect")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if _, err := os.Stat(dir); err == nil {
				ft.populate(t, "selfprotect")
				return
			}
		}
	}()
	inst, err := OpenInstance(ft.paths, Options{PopulateTimeout: 10 * time.Second}, quietLogger())
	<-done
	require.NoError(t, err)
	require.Equal(t, []int{0, 1, 2, 3}, inst.CPUs())
	require.NoError(t, inst.Close())
	require.NoDirExists(t, dir)
}

func TestOpenInstanceFailures(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, ft *fixtureTree) (kpath.Paths, Options)
		wantIs  error
		wantMsg string
		// leftover says whether the instance dir may remain (it existed
		// before and was not ours to create... we still remove it).
	}{
		{"no tracefs", func(t *testing.T, ft *fixtureTree) (kpath.Paths, Options) {
			return kpath.Under(t.TempDir()), Options{}
		}, ErrNoTracefs, "instances"},
		{"bad name", func(t *testing.T, ft *fixtureTree) (kpath.Paths, Options) {
			return ft.paths, Options{Name: "../x"}
		}, nil, "must be one path element"},
		{"never populated", func(t *testing.T, ft *fixtureTree) (kpath.Paths, Options) {
			return ft.paths, Options{PopulateTimeout: 20 * time.Millisecond}
		}, ErrNotPopulated, "lacks events/, per_cpu/ or tracing_on"},
		{"explicit event missing", func(t *testing.T, ft *fixtureTree) (kpath.Paths, Options) {
			ft.populate(t, "selfprotect")
			return ft.paths, Options{Events: []string{"mce/mce_record", "ras/nope"}}
		}, ErrNoEvent, "ras/nope"},
		{"bad event spec", func(t *testing.T, ft *fixtureTree) (kpath.Paths, Options) {
			ft.populate(t, "selfprotect")
			return ft.paths, Options{Events: []string{"mce_record"}}
		}, nil, `trace event "mce_record": want system/name`},
		{"tracing_on write fails", func(t *testing.T, ft *fixtureTree) (kpath.Paths, Options) {
			ft.populate(t, "selfprotect")
			return ft.paths, Options{FS: &recordingFS{root: ft.instanceDir("selfprotect"),
				fail: map[string]error{"tracing_on": syscall.EBUSY}}}
		}, syscall.EBUSY, "writing \"1\" to "},
		{"buffer_percent write fails", func(t *testing.T, ft *fixtureTree) (kpath.Paths, Options) {
			ft.populate(t, "selfprotect")
			return ft.paths, Options{FS: &recordingFS{root: ft.instanceDir("selfprotect"),
				fail: map[string]error{"buffer_percent": syscall.EPERM}}}
		}, syscall.EPERM, "buffer_percent"},
		{"explicit event with broken format", func(t *testing.T, ft *fixtureTree) (kpath.Paths, Options) {
			ft.populate(t, "selfprotect")
			ft.writeFile(t, "selfprotect", "events/mce/mce_record/format", "garbage\n")
			return ft.paths, Options{}
		}, nil, "mce_record/format:1: unexpected line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ft := newFixtureTree(t, "6.12")
			p, opts := tc.setup(t, ft)
			inst, err := OpenInstance(p, opts, quietLogger())
			require.Nil(t, inst)
			require.ErrorContains(t, err, tc.wantMsg)
			if tc.wantIs != nil {
				require.ErrorIs(t, err, tc.wantIs)
			}
			// A failed open leaves no instance behind.
			require.NoDirExists(t, ft.instanceDir("selfprotect"))
		})
	}
}

func TestOpenInstanceTolerates(t *testing.T) {
	t.Run("no buffer_percent on old kernels", func(t *testing.T) {
		ft := newFixtureTree(t, "6.1")
		ft.noBufferPercent = true
		inst := ft.open(t, Options{})
		require.NoFileExists(t, filepath.Join(inst.Dir(), "buffer_percent"))
	})
	t.Run("no ras events", func(t *testing.T) {
		ft := newFixtureTree(t, "6.1")
		ft.events = []string{"mce/mce_record"}
		inst := ft.open(t, Options{Events: []string{"mce/mce_record", "ras/*", "hw/*"}})
		require.Equal(t, []string{"mce/mce_record"}, inst.Events())
	})
	t.Run("wildcard event with broken format is left off", func(t *testing.T) {
		ft := newFixtureTree(t, "6.12")
		ft.populate(t, "selfprotect")
		ft.writeFile(t, "selfprotect", "events/ras/arm_event/format", "name: arm_event\nID: x\n")
		inst, err := OpenInstance(ft.paths, Options{}, quietLogger())
		require.NoError(t, err)
		defer inst.Close()
		require.NotContains(t, inst.Events(), "ras/arm_event")
		require.Contains(t, inst.Events(), "ras/mc_event")
		require.Equal(t, "0\n", ft.read(t, "selfprotect", "events/ras/arm_event/enable"))
	})
	t.Run("custom name and size", func(t *testing.T) {
		ft := newFixtureTree(t, "6.12")
		inst := ft.open(t, Options{Name: "sp2", BufferSizeKB: 16, Events: []string{"ras/mc_event"}})
		require.Equal(t, "sp2", inst.Name())
		require.True(t, strings.HasPrefix(ft.read(t, "sp2", "buffer_size_kb"), "16\n"))
		require.Equal(t, []string{"ras/mc_event"}, inst.Events())
	})
}

func TestRemoveInstanceDir(t *testing.T) {
	t.Run("empty dir is rmdir'd", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "i")
		require.NoError(t, os.Mkdir(dir, 0o755))
		require.NoError(t, removeInstanceDir(dir))
		require.NoDirExists(t, dir)
	})
	t.Run("ordinary tree off tracefs is removed", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "i")
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "per_cpu/cpu0"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "tracing_on"), []byte("0\n"), 0o644))
		require.NoError(t, removeInstanceDir(dir))
		require.NoDirExists(t, dir)
	})
	t.Run("missing dir is fine", func(t *testing.T) {
		require.NoError(t, removeInstanceDir(filepath.Join(t.TempDir(), "gone")))
	})
}

func TestSubBufferSize(t *testing.T) {
	tests := []struct {
		name, content string // "" leaves the file out
		want          int
	}{
		{"kernels before 6.8", "", PageSize},
		{"default on 6.8+", "4\n", 4096},
		{"larger sub-buffers", "8\n", 8192},
		{"garbage", "lots\n", PageSize},
		{"too small", "1\n", PageSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ft := newFixtureTree(t, "6.12")
			ft.populate(t, "selfprotect")
			if tc.content != "" {
				ft.writeFile(t, "selfprotect", "buffer_subbuf_size_kb", tc.content)
			}
			inst, err := OpenInstance(ft.paths, Options{}, nil)
			require.NoError(t, err)
			defer inst.Close()
			require.Equal(t, tc.want, inst.SubBufferSize())
		})
	}
}
