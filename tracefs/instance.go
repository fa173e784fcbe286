package tracefs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/kpath"
)

// Defaults for Options.
const (
	DefaultInstanceName = "selfprotect"
	// DefaultBufferSizeKB is per CPU. Corrected errors are rare and read
	// at once; a small buffer keeps the daemon's footprint small, and an
	// overrun in a storm shows up in Health.
	DefaultBufferSizeKB = 64
	// DefaultPopulateTimeout only matters with the simulator: the kernel
	// fills an instance within mkdir. The simulator's populate took up to
	// 2.8 s on a loaded 2-core host under -race; past the timeout the
	// source is unavailable until the next retry (30 s), so the daemon
	// stays unarmed far longer than this wait.
	DefaultPopulateTimeout = 15 * time.Second
	populatePollInterval   = 10 * time.Millisecond
)

// DefaultEvents are the events the daemon decodes: every MCE, and whatever
// RAS events the kernel has.
func DefaultEvents() []string { return []string{"mce/mce_record", "ras/*"} }

var (
	// ErrNoTracefs: no tracefs with an instances/ directory at the path.
	ErrNoTracefs = errors.New("tracefs not mounted")
	// ErrNotPopulated: the instance directory never got its events/ and
	// per_cpu/ (the simulator did not answer in time).
	ErrNotPopulated = errors.New("tracefs instance not populated")
	// ErrNoEvent: an event named explicitly in Options.Events does not
	// exist on this kernel.
	ErrNoEvent = errors.New("trace event not available")
)

// Options for OpenInstance. Zero values take the defaults above.
type Options struct {
	Name         string
	BufferSizeKB int
	// Events are "system/name" or "system/*" (every event of the system
	// that exists; a missing system is skipped). An explicit event that
	// is missing is an error.
	Events          []string
	PopulateTimeout time.Duration
	// FS performs reads and writes of control files; nil means kpath.OS.
	FS kpath.FS
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = DefaultInstanceName
	}
	if o.BufferSizeKB <= 0 {
		o.BufferSizeKB = DefaultBufferSizeKB
	}
	if len(o.Events) == 0 {
		o.Events = DefaultEvents()
	}
	if o.PopulateTimeout <= 0 {
		o.PopulateTimeout = DefaultPopulateTimeout
	}
	if o.FS == nil {
		o.FS = kpath.OS{}
	}
	return o
}

// Instance is the daemon's own tracefs instance: its own buffers, its own
// tracing_on and event enables, so other tracing users (trace-cmd, perf,
// rasdaemon) neither see nor disturb our settings, and vice versa.
type Instance struct {
	name    string
	dir     string
	fs      kpath.FS
	log     logrus.FieldLogger
	events  []string // "system/name", enabled by us
	formats *Formats
	cpus    []int
	// subBufSize is what one trace_pipe_raw read hands out.
	subBufSize int

	mu       sync.Mutex
	closed   bool
	baseline map[int]CPUStats // losses before we opened (a crashed run's)
}

// OpenInstance creates (or takes over, after a crash) instances/<name>,
// sizes its buffers, enables the events, turns tracing on and loads the
// enabled events' formats. The caller must hold the daemon's lock: a second
// daemon would otherwise take over the first one's instance.
func OpenInstance(p kpath.Paths, opts Options, log logrus.FieldLogger) (*Instance, error) {
	opts = opts.withDefaults()
	if log == nil {
		log = discardLogger()
	}
	if err := validInstanceName(opts.Name); err != nil {
		return nil, err
	}
	p = p.Resolve()
	instances := p.TracingPath("instances")
	if st, err := os.Stat(instances); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: no directory %s", ErrNoTracefs, instances)
	}
	inst := &Instance{
		name: opts.Name,
		dir:  filepath.Join(instances, opts.Name),
		fs:   opts.FS,
		log:  log.WithField("instance", opts.Name),
	}
	if err := os.Mkdir(inst.dir, 0o750); err == nil {
		inst.log.Debugf("created tracefs instance %s", inst.dir)
	} else if errors.Is(err, fs.ErrExist) {
		inst.log.Infof("taking over tracefs instance %s left by an earlier run", inst.dir)
	} else {
		return nil, fmt.Errorf("creating tracefs instance %s: %w", inst.dir, err)
	}
	if err := inst.setUp(opts); err != nil {
		if cerr := inst.Close(); cerr != nil {
			inst.log.WithError(cerr).Warn("cleaning up after a failed instance set-up")
		}
		return nil, err
	}
	return inst, nil
}

func validInstanceName(name string) error {
	if name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("tracefs instance name %q: must be one path element", name)
	}
	return nil
}

func (in *Instance) setUp(opts Options) error {
	if err := waitPopulated(in.dir, opts.PopulateTimeout); err != nil {
		return err
	}
	if err := in.write("buffer_size_kb", strconv.Itoa(opts.BufferSizeKB)); err != nil {
		return err
	}
	// Without buffer_percent 0 a poll on trace_pipe_raw (and so a read
	// through Go's poller) wakes only when the buffer is half full.
	// Kernels before buffer_percent existed wake on any data.
	if err := in.write("buffer_percent", "0"); errors.Is(err, fs.ErrNotExist) {
		in.log.Info("this kernel has no buffer_percent; readers wake on every event")
	} else if err != nil {
		return err
	}
	events, err := in.expandEvents(opts.Events)
	if err != nil {
		return err
	}
	var formats []*Format
	for _, ev := range events {
		f, err := in.loadFormat(ev.key)
		if err != nil {
			if ev.explicit {
				return err
			}
			in.log.WithError(err).Warnf("not enabling %s: its format cannot be read", ev.key)
			continue
		}
		if err := in.write(path.Join("events", ev.key, "enable"), "1"); err != nil {
			return err
		}
		in.events = append(in.events, ev.key)
		formats = append(formats, f)
	}
	in.formats = NewFormats(formats...)
	if err := in.write("tracing_on", "1"); err != nil {
		return err
	}
	if in.cpus, err = listCPUs(in.fs, filepath.Join(in.dir, "per_cpu")); err != nil {
		return err
	}
	in.subBufSize = in.readSubBufSize()
	in.baseline = in.readAllStats(nil)
	in.log.WithField("events", in.events).Infof("tracing %d events on %d CPUs in %s", len(in.events), len(in.cpus), in.dir)
	return nil
}

// waitPopulated waits for the kernel (synchronous) or the simulator
// (another process, asynchronous) to fill a new instance directory. The
// simulator writes tracing_on last, so with it present the rest is there.
func waitPopulated(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		complete := true
		for _, name := range []string{"events", "per_cpu", "tracing_on"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				complete = false
			}
		}
		if complete {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s lacks events/, per_cpu/ or tracing_on after %v", ErrNotPopulated, dir, timeout)
		}
		time.Sleep(populatePollInterval)
	}
}

type wantedEvent struct {
	key      string
	explicit bool
}

// expandEvents turns "system/*" into the events that exist and checks that
// explicit events exist.
func (in *Instance) expandEvents(specs []string) ([]wantedEvent, error) {
	var out []wantedEvent
	seen := map[string]bool{}
	add := func(key string, explicit bool) {
		if !seen[key] {
			seen[key] = true
			out = append(out, wantedEvent{key, explicit})
		}
	}
	for _, spec := range specs {
		system, name, ok := strings.Cut(spec, "/")
		if !ok || system == "" || name == "" || strings.Contains(name, "/") ||
			validInstanceName(system) != nil || validInstanceName(name) != nil {
			return nil, fmt.Errorf("trace event %q: want system/name or system/*", spec)
		}
		if name != "*" {
			if _, err := in.fs.Stat(filepath.Join(in.dir, "events", system, name, "enable")); err != nil {
				return nil, fmt.Errorf("%w: %s in %s: %v", ErrNoEvent, spec, in.dir, err)
			}
			add(spec, true)
			continue
		}
		entries, err := in.fs.ReadDir(filepath.Join(in.dir, "events", system))
		if errors.Is(err, fs.ErrNotExist) {
			in.log.Infof("this kernel has no %s events", system)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s events: %w", system, err)
		}
		for _, e := range entries {
			if e.IsDir() {
				add(system+"/"+e.Name(), false)
			}
		}
	}
	return out, nil
}

func (in *Instance) loadFormat(key string) (*Format, error) {
	p := filepath.Join(in.dir, "events", key, "format")
	data, err := in.fs.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	system, _, _ := strings.Cut(key, "/")
	f, err := ParseFormat(p, system, data)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// write writes one control file of the instance, newline-terminated as a
// shell echo would.
func (in *Instance) write(rel, value string) error {
	p := filepath.Join(in.dir, rel)
	if err := in.fs.WriteFile(p, []byte(value+"\n")); err != nil {
		return fmt.Errorf("writing %q to %s: %w", value, p, err)
	}
	return nil
}

// listCPUs returns N for every per_cpu/cpuN directory, sorted.
func listCPUs(fsys kpath.FS, dir string) ([]int, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	var cpus []int
	for _, e := range entries {
		n, ok := strings.CutPrefix(e.Name(), "cpu")
		if !ok || !e.IsDir() {
			continue
		}
		if c, err := strconv.Atoi(n); err == nil && c >= 0 {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("%s has no cpuN directories", dir)
	}
	sort.Ints(cpus)
	return cpus, nil
}

// readSubBufSize reads buffer_subbuf_size_kb (kernel 6.8+, where the ring
// buffer's pages may be larger than 4 KiB); older kernels and the simulator
// lack it and use one memory page.
func (in *Instance) readSubBufSize() int {
	data, err := in.fs.ReadFile(filepath.Join(in.dir, "buffer_subbuf_size_kb"))
	if err != nil {
		return PageSize
	}
	kb, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || kb < PageSize/1024 || kb > 1024 {
		in.log.Warnf("ignoring buffer_subbuf_size_kb %q; reading %d-byte pages", strings.TrimSpace(string(data)), PageSize)
		return PageSize
	}
	return kb * 1024
}

// SubBufferSize is the size of one ring-buffer page as trace_pipe_raw
// hands it out (PageSize unless buffer_subbuf_size_kb says otherwise).
func (in *Instance) SubBufferSize() int { return in.subBufSize }

// Formats of the enabled events, keyed by event ID.
func (in *Instance) Formats() *Formats { return in.formats }

// CPUs are the CPUs with a ring buffer in the instance (possible CPUs, so
// offlined ones included).
func (in *Instance) CPUs() []int { return append([]int(nil), in.cpus...) }

// Dir is the instance directory.
func (in *Instance) Dir() string { return in.dir }

// Name is the instance name.
func (in *Instance) Name() string { return in.name }

// Events are the "system/name" keys the instance enabled.
func (in *Instance) Events() []string { return append([]string(nil), in.events...) }

// PipePath is per_cpu/cpuN/trace_pipe_raw of the instance.
func (in *Instance) PipePath(cpu int) string {
	return filepath.Join(in.dir, "per_cpu", "cpu"+strconv.Itoa(cpu), "trace_pipe_raw")
}

// Close disables the events, turns tracing off and removes the instance.
// Readers of trace_pipe_raw must have stopped: the kernel refuses to remove
// an instance with open files (EBUSY). Close is idempotent.
func (in *Instance) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil
	}
	in.closed = true
	if _, err := os.Stat(in.dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var errs []error
	for _, ev := range in.events {
		if err := in.write(path.Join("events", ev, "enable"), "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := in.write("tracing_on", "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := removeInstanceDir(in.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func discardLogger() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

// removeInstanceDir rmdirs the instance: tracefs then drops everything in
// it. A simulator tree holds ordinary files, so rmdir finds it not empty;
// only there, never on a real tracefs, is the tree removed file by file.
func removeInstanceDir(dir string) error {
	err := os.Remove(dir)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("removing tracefs instance %s: %w", dir, err)
	}
	var st unix.Statfs_t
	if serr := unix.Statfs(dir, &st); serr != nil {
		return fmt.Errorf("removing tracefs instance %s: %w (and statfs: %v)", dir, err, serr)
	}
	if st.Type == unix.TRACEFS_MAGIC {
		return fmt.Errorf("removing tracefs instance %s: %w", dir, err)
	}
	// Move the tree out of instances/ first: rmdir on tracefs is atomic,
	// and a half-deleted directory left in instances/ would look to the
	// next run (and to a simulator watching the directory) like an
	// instance to take over.
	gone := filepath.Join(filepath.Dir(filepath.Dir(dir)), fmt.Sprintf(".removed-%s-%d", filepath.Base(dir), os.Getpid()))
	if rerr := os.Rename(dir, gone); rerr != nil {
		return fmt.Errorf("removing instance tree %s: %w", dir, rerr)
	}
	if rerr := os.RemoveAll(gone); rerr != nil {
		return fmt.Errorf("removing instance tree %s: %w", gone, rerr)
	}
	return nil
}
