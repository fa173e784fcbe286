package tracefs

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/kpath"
)

// fixtureTree lays out a tracefs root the way the kernel (or the simulator)
// shows an instance: control files, events with their real format files and
// per-CPU buffers.
type fixtureTree struct {
	paths  kpath.Paths
	kernel string
	cpus   int
	// fifo makes trace_pipe_raw a named pipe, as in the simulator.
	fifo bool
	// noBufferPercent leaves buffer_percent out, as on old kernels.
	noBufferPercent bool
	// events are copied from testdata/<kernel>/events.
	events []string
}

func newFixtureTree(t *testing.T, kernel string) *fixtureTree {
	t.Helper()
	root := t.TempDir()
	paths := kpath.Under(root)
	require.NoError(t, os.MkdirAll(paths.TracingPath("instances"), 0o755))
	return &fixtureTree{
		paths: paths, kernel: kernel, cpus: 4,
		events: []string{"mce/mce_record", "ras/mc_event", "ras/memory_failure_event", "ras/aer_event",
			"ras/extlog_mem_event", "ras/non_standard_event", "ras/arm_event"},
	}
}

func (ft *fixtureTree) instanceDir(name string) string {
	return ft.paths.TracingPath("instances", name)
}

// populate fills an instance directory (which may already exist).
func (ft *fixtureTree) populate(t testing.TB, name string) {
	dir := ft.instanceDir(name)
	write := func(rel, content string) {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	write("buffer_size_kb", "1408\n")
	if !ft.noBufferPercent {
		write("buffer_percent", "50\n")
	}
	for _, ev := range ft.events {
		data, err := os.ReadFile(filepath.Join("testdata", ft.kernel, "events", ev, "format"))
		require.NoError(t, err)
		write(filepath.Join("events", ev, "format"), string(data))
		write(filepath.Join("events", ev, "enable"), "0\n")
	}
	// The kernel also has a system-wide enable file next to the event dirs.
	write("events/ras/enable", "0\n")
	stats, err := os.ReadFile("testdata/pages/6.12-amd/stats-cpu0.txt")
	require.NoError(t, err)
	for cpu := 0; cpu < ft.cpus; cpu++ {
		c := "per_cpu/cpu" + strconv.Itoa(cpu)
		write(filepath.Join(c, "stats"), string(stats))
		pipe := filepath.Join(dir, c, "trace_pipe_raw")
		if ft.fifo {
			require.NoError(t, syscall.Mkfifo(pipe, 0o600))
		} else {
			write(filepath.Join(c, "trace_pipe_raw"), "")
		}
	}
	// Last, as the simulator does: its presence says the rest is there.
	write("tracing_on", "0\n")
}

func (ft *fixtureTree) read(t *testing.T, name, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ft.instanceDir(name), rel))
	require.NoError(t, err)
	return string(b)
}

func (ft *fixtureTree) writeFile(t *testing.T, name, rel, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(ft.instanceDir(name), rel), []byte(content), 0o644))
}

// open takes over a populated instance.
func (ft *fixtureTree) open(t *testing.T, opts Options) *Instance {
	t.Helper()
	if opts.Name == "" {
		opts.Name = DefaultInstanceName
	}
	ft.populate(t, opts.Name)
	inst, err := OpenInstance(ft.paths, opts, quietLogger())
	require.NoError(t, err)
	t.Cleanup(func() { _ = inst.Close() })
	return inst
}

func quietLogger() logrus.FieldLogger {
	l, _ := test.NewNullLogger()
	return l
}

// recordingFS is kpath.OS that logs writes and can fail chosen paths.
type recordingFS struct {
	kpath.OS
	mu     sync.Mutex
	writes []string // "rel=value"
	root   string
	fail   map[string]error // by base name relative to root
}

func (r *recordingFS) WriteFile(name string, data []byte) error {
	rel, _ := filepath.Rel(r.root, name)
	r.mu.Lock()
	r.writes = append(r.writes, rel+"="+string(data))
	err := r.fail[rel]
	r.mu.Unlock()
	if err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	return r.OS.WriteFile(name, data)
}

func (r *recordingFS) Writes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}
