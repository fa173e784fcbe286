package sim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// instance is a tracefs instance (instances/<name>) the simulator has
// populated, with one ring-buffer FIFO per CPU.
type instance struct {
	name string
	dir  string
	cpus []*cpuBuffer
	// aggregate holds what the simulator last wrote to events/enable and
	// events/<sys>/enable, to tell a write by someone else from its own.
	aggregate map[string]string
}

// cpuBuffer is per_cpu/cpuN of an instance: trace_pipe_raw as a FIFO the
// simulator keeps open read-write, so writes never block on a missing
// reader and a reader never sees end of file.
type cpuBuffer struct {
	cpu      int
	dir      string
	fd       int
	enc      pageEncoder
	entries  uint64
	bytes    uint64
	overrun  uint64
	oldestTS uint64
	dirty    bool
}

func (in *instance) close() {
	for _, c := range in.cpus {
		if c.fd >= 0 {
			unix.Close(c.fd)
			c.fd = -1
		}
	}
}

// syncInstances populates new instance directories like tracefs does on
// mkdir and forgets removed ones.
func (m *Machine) syncInstances() error {
	root := m.paths.TracingPath("instances")
	ents, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("reading %s: %w", root, err)
	}
	present := map[string]bool{}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		present[e.Name()] = true
		if _, known := m.instances[e.Name()]; known {
			continue
		}
		in, err := m.populate(e.Name())
		if err != nil {
			return err
		}
		m.instances[e.Name()] = in
	}
	for name, in := range m.instances {
		if !present[name] {
			in.close()
			delete(m.instances, name)
			continue
		}
		in.syncEnables(m)
	}
	return nil
}

// populate creates an instance's files. tracing_on is written last, so a
// reader that waits for it sees a complete instance.
func (m *Machine) populate(name string) (*instance, error) {
	dir := m.paths.TracingPath("instances", name)
	in := &instance{name: name, dir: dir, aggregate: map[string]string{}}
	w := treeWriter{paths: m.paths, prof: m.prof}
	fail := func(err error) (*instance, error) {
		in.close()
		return nil, fmt.Errorf("populating instance %s: %w", name, err)
	}
	for c := 0; c < m.prof.CPUs; c++ {
		cb := &cpuBuffer{cpu: c, dir: filepath.Join(dir, "per_cpu", fmt.Sprintf("cpu%d", c)), fd: -1}
		in.cpus = append(in.cpus, cb)
		pipe := filepath.Join(cb.dir, "trace_pipe_raw")
		if err := mkfifo(pipe); err != nil {
			return fail(err)
		}
		fd, err := unix.Open(pipe, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("opening %s: %w", pipe, err))
		}
		cb.fd = fd
		if err := cb.writeStats(m.nowNS()); err != nil {
			return fail(err)
		}
	}
	if err := writeEvents(w, filepath.Join(dir, "events"), m.prof.Kernel); err != nil {
		return fail(err)
	}
	if err := w.files(dir, map[string]string{
		"buffer_size_kb": "1408\n", "buffer_percent": "50\n", "trace_clock": traceClocks,
	}); err != nil {
		return fail(err)
	}
	for _, p := range in.aggregatePaths() {
		in.aggregate[p] = "0\n"
	}
	if err := w.file(filepath.Join(dir, "tracing_on"), "1\n"); err != nil {
		return fail(err)
	}
	return in, nil
}

// aggregatePaths lists events/<sys>/enable files first, then events/enable.
func (in *instance) aggregatePaths() []string {
	ev := filepath.Join(in.dir, "events")
	sys, _ := filepath.Glob(filepath.Join(ev, "*", "enable"))
	slices.Sort(sys)
	return append(sys, filepath.Join(ev, "enable"))
}

// syncEnables makes events/enable and events/<sys>/enable behave: a "0" or
// "1" written there goes to every event below it, and each then shows "0",
// "1" or "X" (mixed), as the kernel shows them.
func (in *instance) syncEnables(m *Machine) {
	paths := in.aggregatePaths()
	// A write to events/enable wins over one to a system at the same pass.
	for i := len(paths) - 1; i >= 0; i-- {
		p := paths[i]
		cur, err := os.ReadFile(p)
		if err != nil || string(cur) == in.aggregate[p] {
			continue
		}
		v := strings.TrimSpace(string(cur))
		if v != "0" && v != "1" {
			continue
		}
		children, _ := filepath.Glob(filepath.Join(filepath.Dir(p), "*", "enable"))
		if filepath.Base(filepath.Dir(p)) == "events" {
			children, _ = filepath.Glob(filepath.Join(filepath.Dir(p), "*", "*", "enable"))
		}
		for _, c := range children {
			_ = os.WriteFile(c, []byte(v+"\n"), 0o644)
		}
	}
	for _, p := range paths {
		var children []string
		if filepath.Base(filepath.Dir(p)) == "events" {
			children, _ = filepath.Glob(filepath.Join(filepath.Dir(p), "*", "*", "enable"))
		} else {
			children, _ = filepath.Glob(filepath.Join(filepath.Dir(p), "*", "enable"))
		}
		state := ""
		for _, c := range children {
			v := "0"
			if enabledFile(c) {
				v = "1"
			}
			if state == "" {
				state = v
			} else if state != v {
				state = "X"
			}
		}
		if state == "" {
			state = "0"
		}
		if in.aggregate[p] != state+"\n" {
			_ = os.WriteFile(p, []byte(state+"\n"), 0o644)
			in.aggregate[p] = state + "\n"
		}
	}
}

// enabledFile reads a tracefs boolean: anything starting with '1' is on.
func enabledFile(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && len(b) > 0 && b[0] == '1'
}

// records reports whether the instance records the event now.
func (in *instance) records(system, name string) bool {
	return enabledFile(filepath.Join(in.dir, "tracing_on")) &&
		enabledFile(filepath.Join(in.dir, "events", system, name, "enable"))
}

// fullWait bounds how long a page write waits for a reader to make room in
// a full FIFO before the page is dropped and counted as overrun. A live
// daemon that logs every record at debug level fell more than 2 s behind a
// storm on a loaded 2-core host, and the storm tests count every record.
const fullWait = 10 * time.Second

// writePage writes one whole page. A 4096-byte write to a pipe is atomic,
// so a reader always gets whole pages.
func (c *cpuBuffer) writePage(page []byte, records, dataBytes int) error {
	deadline := time.Now().Add(fullWait)
	for {
		_, err := unix.Write(c.fd, page)
		switch {
		case err == nil:
			c.entries += uint64(records)
			c.bytes += uint64(dataBytes)
			c.dirty = true
			return nil
		case errors.Is(err, unix.EAGAIN) && time.Now().Before(deadline):
			time.Sleep(200 * time.Microsecond)
		case errors.Is(err, unix.EAGAIN):
			c.overrun += uint64(records)
			c.dirty = true
			return errOverrun
		default:
			return fmt.Errorf("writing %s/trace_pipe_raw: %w", c.dir, err)
		}
	}
}

var errOverrun = errors.New("ring buffer overrun")

// writeStats renders per_cpu/cpuN/stats in the kernel's format. entries and
// bytes count what the simulator has written, since it cannot see what a
// reader consumed.
func (c *cpuBuffer) writeStats(nowNS uint64) error {
	sec := func(ns uint64) string { return fmt.Sprintf("%5d.%06d", ns/1e9, ns%1e9/1e3) }
	text := fmt.Sprintf("entries: %d\noverrun: %d\ncommit overrun: 0\nbytes: %d\noldest event ts: %s\nnow ts: %s\ndropped events: 0\nread events: 0\n",
		c.entries, c.overrun, c.bytes, sec(c.oldestTS), sec(nowNS))
	path := filepath.Join(c.dir, "stats")
	if err := writeAtomic(path, []byte(text)); err != nil {
		return err
	}
	c.dirty = false
	return nil
}

// writeAtomic replaces a file through a rename, so a concurrent reader sees
// the old or the new content, never half of it.
func writeAtomic(path string, b []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return nil
}
