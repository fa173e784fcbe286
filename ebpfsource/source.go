package ebpfsource

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
	"github.com/selfprotect/selfprotect/tracefs"
)

// ErrNotSupported means this kernel or this process cannot run the probes
// (no BPF, no ring buffer, no privilege, no RAS tracepoint at all): the
// caller should fall back to the tracefs source. Any other error from Open
// means the source is broken (a program the kernel refused, a failed
// attach) and is worth reporting as such.
var ErrNotSupported = errors.New("eBPF probes not supported")

// Defaults for Config's zero values. Past DefaultKeyLimit records a
// second, a key's records are counted in the kernel: the first counted one
// still wakes the reader (a notice, answered by a sweep at once), so a
// policy threshold up to DefaultKeyLimit+1 within a second (the built-in
// ones are 2 per page and 5 per CPU and bank) decides as soon as through
// records sent one by one; what is counted later in a storm reaches the
// engines every DefaultSweep. A key that keeps past the limit from one
// window to the next sends nothing more and wakes nobody: its records are
// all counted, and reach the engines as one event per key per sweep (what
// they could decide at once, the first window's records already did; see
// bpf/probes.c). Userspace then handles about one event and one wake-up a
// second per storming key, however many errors the key has.
const (
	DefaultKeyLimit  = 4
	DefaultKeyWindow = time.Second
	DefaultSweep     = time.Second
	DefaultBackstop  = 10 * time.Second
	DefaultRingBytes = 256 << 10
)

// Config says where the kernel is and what to do with records.
type Config struct {
	Paths kpath.Paths
	FS    kpath.FS
	// Decoders turn records into events, keyed "system/name" like the
	// tracefs source's (mce.TraceDecoder, edac.TraceDecoder). A probe whose
	// records nobody decodes still counts them.
	Decoders map[string]tracefs.Decoder
	// KeyLimit records of one aggregation key (a page, or a CPU and bank)
	// are sent per KeyWindow; past that they are counted in the kernel and
	// reported as totals.
	KeyLimit  uint32
	KeyWindow time.Duration
	// Sweep is how often the counters are read while a storm lasts.
	Sweep time.Duration
	// Backstop bounds how long the reader waits without a wake-up before
	// it drains the ring and reads the counters anyway.
	Backstop time.Duration
	// RingBytes sizes the ring buffer: a power of two, a multiple of the
	// page size; 0 means DefaultRingBytes.
	RingBytes uint32
	// Held opens the probes with aggregation held (HoldAggregation): a
	// source that may take over from another reader of the same
	// tracepoints starts so, and is released once no record can reach
	// userspace through both.
	Held bool
	// TestDieAfter is for tests only: Run fails this long after it
	// started (at its next wait for records), leaving the maps' counts
	// since the last sweep unread and the probes attached, as a reader
	// that breaks in a storm would (0 = never).
	TestDieAfter time.Duration
	Log          logrus.FieldLogger
	// Now stamps records with their receive time; nil means time.Now.
	Now func() time.Time
}

// Source runs the probes. Open loads and attaches them; Run reads until its
// context ends or Close is called; Close detaches everything.
type Source struct {
	cfg    Config
	coll   *ebpf.Collection
	links  []link.Link
	reader *ringbuf.Reader
	// ring is a second descriptor of the ring buffer map, non-blocking
	// in Go's netpoller: Run waits for records there, where cilium's
	// reader would wait in epoll_wait(2) inside a system call holding its
	// P (on a daemon pinned to one CPU, the main loop then took each
	// event only when sysmon took the P back).
	ring     *os.File
	ringConn syscall.RawConn
	formats  map[uint32]*tracefs.Format
	decoders map[uint32]tracefs.Decoder
	attached []probe
	aggMaps  map[uint32]*ebpf.Map
	stats    *ebpf.Map
	log      logrus.FieldLogger
	counts   counters

	// reported is what Run has emitted per aggregation key, aggregated
	// each probe's counted records at the last sweep; only the Run
	// goroutine touches them.
	reported   map[probesSpKey]uint64
	aggregated map[uint32]uint64
	// raw reads the maps for the sweep (rawmap.go), made at the first.
	raw *rawSet

	// heldFullFrom is the probes' ring-buffer-full count when aggregation
	// was last held (guarded by holdMu).
	holdMu       sync.Mutex
	heldFullFrom uint64

	closeOnce sync.Once
	closeErr  error
	// closed is set before Close closes anything: Run, woken by it, ends
	// with nil.
	closed atomic.Bool
	// sweepAsked is SweepNow's request, taken by Run.
	sweepAsked atomic.Bool
	// readerMu keeps Close from closing the reader while Run's wait asks
	// it how much the ring holds: cilium's AvailableBytes reads the
	// reader's ring without its lock, and Close sets it to nil.
	readerMu sync.RWMutex
}

type counters struct {
	records, decoded, events, undecodable, noDecoder, malformed, notices, sweeps, aggregateEvents atomic.Uint64
	// The kernel side summed over probes, as of the last sweep: read by
	// status without a syscall.
	kernelSent, kernelAggregated, kernelRingbufFull, kernelLost atomic.Uint64
}

// withDefaults fills zero fields.
func (cfg Config) withDefaults() Config {
	if cfg.FS == nil {
		cfg.FS = kpath.OS{}
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetOutput(nopWriter{})
		cfg.Log = l
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.KeyLimit = cmp.Or(cfg.KeyLimit, DefaultKeyLimit)
	cfg.KeyWindow = cmp.Or(cfg.KeyWindow, DefaultKeyWindow)
	cfg.Sweep = cmp.Or(cfg.Sweep, DefaultSweep)
	cfg.Backstop = cmp.Or(cfg.Backstop, DefaultBackstop)
	cfg.RingBytes = cmp.Or(cfg.RingBytes, DefaultRingBytes)
	return cfg
}

// Open checks what the kernel offers, loads the object and attaches a probe
// to every tracepoint this kernel has.
func Open(cfg Config) (*Source, error) {
	cfg = cfg.withDefaults()
	if r := cfg.RingBytes; r < 4096 || r&(r-1) != 0 {
		return nil, fmt.Errorf("ring buffer of %d bytes: want a power of two of at least 4096", r)
	}

	// link.Tracepoint attaches to the running kernel's tracepoints whatever
	// cfg.Paths says: under another tracing root (the simulator's tree) the
	// probes would watch the host, not the machine the daemon is told to.
	if !kernelTracing(cfg.Paths.Tracing) {
		return nil, fmt.Errorf("%w: tracing root %s is not the running kernel's tracefs", ErrNotSupported, cfg.Paths.Tracing)
	}
	var present []probe
	for _, p := range probes {
		dir := cfg.Paths.TracingPath("events", p.group, p.name)
		if _, err := cfg.FS.Stat(dir); err == nil {
			present = append(present, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("checking tracepoint %s: %w", dir, err)
		}
	}
	if len(present) == 0 {
		return nil, fmt.Errorf("%w: no RAS tracepoint under %s (tracefs not mounted, or a kernel without MCE and RAS)",
			ErrNotSupported, cfg.Paths.TracingPath("events"))
	}
	if err := probeKernel(); err != nil {
		return nil, err
	}

	spec, err := loadProbes()
	if err != nil {
		return nil, fmt.Errorf("parsing the embedded BPF object: %w", err)
	}
	formats, err := wireFormats(spec.Types)
	if err != nil {
		return nil, err
	}
	if err := setLimits(spec, cfg); err != nil {
		return nil, err
	}
	spec.Maps[probesMapEvents].MaxEntries = cfg.RingBytes
	// A program for a tracepoint this kernel lacks would fail CO-RE (its
	// context type is missing from the kernel's BTF): leave it out.
	keep := map[string]bool{}
	for _, p := range present {
		keep[p.program] = true
	}
	for name := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
		}
	}

	coll, err := ebpf.NewCollection(spec)
	// The spec holds the object's BTF and the kernel's is parsed per load
	// (no shared btf.Cache): dropping the spec and returning the heap keeps
	// the daemon's idle RSS from carrying several MB of parsed types.
	spec = nil
	debug.FreeOSMemory()
	if err != nil {
		if unsupported(err) {
			return nil, fmt.Errorf("%w: loading the probes: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("loading the probes: %w", err)
	}

	s := newSource(cfg, coll, formats)
	if cfg.Held {
		// Before any probe is attached: no record escapes the hold.
		if err := s.HoldAggregation(); err != nil {
			s.Close()
			return nil, err
		}
	}
	for _, p := range present {
		l, err := link.Tracepoint(p.group, p.name, coll.Programs[p.program], nil)
		if err != nil {
			s.Close()
			if unsupported(err) {
				return nil, fmt.Errorf("%w: attaching to %s: %w", ErrNotSupported, p.Key(), err)
			}
			return nil, fmt.Errorf("attaching to %s: %w", p.Key(), err)
		}
		s.links = append(s.links, l)
		s.adopt(p)
	}
	s.reader, err = ringbuf.NewReader(coll.Maps[probesMapEvents])
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("opening the ring buffer: %w", err)
	}
	if s.ring, s.ringConn, err = pollable(coll.Maps[probesMapEvents].FD()); err != nil {
		s.Close()
		return nil, fmt.Errorf("opening the ring buffer: %w", err)
	}
	return s, nil
}

// kernelTracing says whether dir is where the kernel's tracefs is mounted,
// the only places cilium/ebpf's link package looks.
func kernelTracing(dir string) bool {
	switch filepath.Clean(dir) {
	case "/sys/kernel/tracing", "/sys/kernel/debug/tracing":
		return true
	}
	return false
}

func newSource(cfg Config, coll *ebpf.Collection, formats map[uint32]*tracefs.Format) *Source {
	return &Source{
		cfg: cfg, coll: coll, formats: formats, log: cfg.Log.WithField("source", "ebpf"),
		decoders: map[uint32]tracefs.Decoder{}, aggMaps: map[uint32]*ebpf.Map{},
		stats: coll.Maps[probesMapStats], reported: map[probesSpKey]uint64{}, aggregated: map[uint32]uint64{},
	}
}

// adopt makes an attached probe's records and counters part of the source.
func (s *Source) adopt(p probe) {
	s.attached = append(s.attached, p)
	s.aggMaps[p.kind] = s.coll.Maps[p.aggMap]
	if d, ok := s.cfg.Decoders[p.Key()]; ok {
		s.decoders[p.kind] = d
	}
}

// probeKernel asks the kernel for what the object needs, so that a kernel
// without it reads as "not supported" rather than as a load failure.
func probeKernel() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("%w: raising RLIMIT_MEMLOCK: %w", ErrNotSupported, err)
	}
	checks := []struct {
		what string
		err  func() error
	}{
		{"tracepoint programs", func() error { return features.HaveProgramType(ebpf.TracePoint) }},
		{"BPF ring buffers", func() error { return features.HaveMapType(ebpf.RingBuf) }},
	}
	for _, c := range checks {
		if err := c.err(); err != nil {
			// An unprivileged process gets EPERM from the probe: for the
			// daemon that is the same as a kernel without the feature.
			return fmt.Errorf("%w: %s: %w", ErrNotSupported, c.what, err)
		}
	}
	return nil
}

func unsupported(err error) bool {
	return errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrNotExist)
}

func setLimits(spec *ebpf.CollectionSpec, cfg Config) error {
	vars := map[string]any{
		probesVarKeyLimit:    cfg.KeyLimit,
		probesVarKeyWindowNs: uint64(cfg.KeyWindow.Nanoseconds()),
	}
	for name, v := range vars {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("BPF object has no variable %s", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	return nil
}

// Name implements fault.EventSource.
func (s *Source) Name() string { return "ebpf" }

// Attached lists the tracepoints the probes are attached to.
func (s *Source) Attached() []string {
	out := make([]string, len(s.attached))
	for i, p := range s.attached {
		out[i] = p.Key()
	}
	return out
}

// Close interrupts Run and detaches the probes. It is safe to call twice.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		var errs []error
		if s.ring != nil {
			errs = append(errs, s.ring.Close()) // wakes Run's wait
		}
		if s.reader != nil {
			s.readerMu.Lock()
			errs = append(errs, s.reader.Close())
			s.readerMu.Unlock()
		}
		for _, l := range s.links {
			errs = append(errs, l.Close())
		}
		s.coll.Close()
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Run delivers events until ctx ends (nil) or the source is closed (nil),
// or the ring buffer fails (the error). Every record the probes sent is
// decoded and sent on out; records the probes counted instead (a storm on
// one key, a full ring buffer) are read from the aggregation maps while a
// storm lasts, at every backstop timeout and when Run returns, and sent as
// one event per key carrying the count.
func (s *Source) Run(ctx context.Context, out chan<- fault.Event) (err error) {
	if s.cfg.TestDieAfter > 0 {
		defer s.dieForTest()(&err)
	}
	stop := context.AfterFunc(ctx, func() {
		_ = s.reader.Flush()
		_ = s.ring.SetReadDeadline(time.Now()) // wakes the wait below
	})
	defer stop()
	clock := newSweepClock(s.cfg.Sweep, s.cfg.Backstop, time.Now())
	var rec ringbuf.Record
	for {
		if ctx.Err() == nil && !s.closed.Load() && !s.holds() {
			// Empty: wait in the netpoller. Asking cilium's reader would
			// cost an epoll_wait(2) through the runtime's syscall path
			// (it wakes sysmon) to learn the same.
			if err := s.waitRecords(ctx, clock.next); err != nil {
				if s.closed.Load() || errors.Is(err, os.ErrClosed) {
					return nil
				}
				return fmt.Errorf("waiting on the BPF ring buffer: %w", err)
			}
			if now, asked := time.Now(), s.sweepAsked.Swap(false); asked || clock.due(now) {
				clock.swept(now, s.sweep(ctx, out, false), asked)
			}
			continue
		}
		// cilium's reader never waits here (its deadline is past): it
		// hands out what the ring holds, then says so.
		s.reader.SetDeadline(time.Unix(1, 0))
		err := s.reader.ReadInto(&rec)
		switch {
		case err == nil:
			if s.handle(ctx, rec.RawSample, out) {
				clock.notice(time.Now())
			}
			if !s.holds() {
				// The last record for now: let the main loop take it
				// before this reader re-arms its wait (a deadline timer,
				// the netpoller). On a daemon with one CPU that work
				// otherwise came between a deciding record and its
				// diagnosis.
				runtime.Gosched()
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The ring is empty: wait in the netpoller for the next
			// record, the sweep, or the end.
			if err := s.waitRecords(ctx, clock.next); err != nil {
				if s.closed.Load() || errors.Is(err, os.ErrClosed) {
					return nil
				}
				return fmt.Errorf("waiting on the BPF ring buffer: %w", err)
			}
		case errors.Is(err, ringbuf.ErrFlushed):
			// ctx ended: report what was counted and stop.
			s.sweep(context.WithoutCancel(ctx), out, true)
			return nil
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("reading the BPF ring buffer: %w", err)
		}
		if ctx.Err() != nil {
			// Flush has run: the next read ends with ErrFlushed.
			continue
		}
		if now, asked := time.Now(), s.sweepAsked.Swap(false); asked || clock.due(now) {
			clock.swept(now, s.sweep(ctx, out, false), asked)
		}
	}
}

// holds says whether the ring buffer holds a record (cilium's
// AvailableBytes reads the mapped positions: no system call).
func (s *Source) holds() bool {
	s.readerMu.RLock()
	defer s.readerMu.RUnlock()
	return !s.closed.Load() && s.reader.AvailableBytes() > 0
}

// SweepNow asks Run to read the aggregation maps at once, as at a notice:
// a daemon that ticks anyway while a storm lasts (to end it, to write the
// history) drives the sweep from the same tick, so the storm costs one
// wake-up a second, not one per timer. It never blocks, and arms no
// runtime timer (a read deadline in the past wakes the wait directly).
func (s *Source) SweepNow() {
	s.sweepAsked.Store(true)
	if s.ring != nil {
		_ = s.ring.SetReadDeadline(time.Unix(1, 0))
	}
}

// waitRecords parks until the ring buffer holds a record, until (a
// deadline: the sweep is due; not an error), or ctx ends. The ring is
// checked after the netpoller is armed for it, so a record committed
// since the last read is never waited past.
func (s *Source) waitRecords(ctx context.Context, until time.Time) error {
	if err := s.ring.SetReadDeadline(until); err != nil {
		return err
	}
	if s.sweepAsked.Load() {
		return nil // asked before this wait armed: SweepNow's wake-up may be spent
	}
	err := s.ringConn.Read(func(uintptr) bool {
		s.readerMu.RLock()
		defer s.readerMu.RUnlock()
		return s.closed.Load() || ctx.Err() != nil || s.sweepAsked.Load() || s.reader.AvailableBytes() > 0
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// pollable opens a second, non-blocking descriptor of a ring buffer map
// that Go's netpoller waits on (a BPF ring buffer polls readable while it
// holds records).
func pollable(fd int) (*os.File, syscall.RawConn, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("duplicating the map descriptor: %w", err)
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, nil, fmt.Errorf("making the map descriptor non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(dup), "bpf-ringbuf")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rc, nil
}

// sweepClock says when the aggregation maps are read next. next is a
// point in time, not a timeout per read, so a steady flow of records
// cannot postpone a sweep forever; it is wall time because the ring
// buffer's deadline is.
type sweepClock struct {
	sweep, backstop time.Duration
	next            time.Time
}

func newSweepClock(sweep, backstop time.Duration, now time.Time) *sweepClock {
	return &sweepClock{sweep: sweep, backstop: backstop, next: now.Add(backstop)}
}

// notice: a key started counting in the kernel, and its first counted
// record may be the one a rule waits for: sweep now.
func (c *sweepClock) notice(now time.Time) { c.next = now }

func (c *sweepClock) due(now time.Time) bool { return !now.Before(c.next) }

// swept: while the counters move, sweep every sweep; once they stop, only
// at the backstop. A sweep someone asked for (SweepNow) will be asked for
// again within a sweep: our own comes a sweep later, as the fallback for
// when the asking stops, so the two never run back to back (ours would
// wake the runtime for its timer as well).
func (c *sweepClock) swept(now time.Time, grew, asked bool) {
	switch {
	case grew && asked:
		c.next = now.Add(2 * c.sweep)
	case grew:
		c.next = now.Add(c.sweep)
	default:
		c.next = now.Add(c.backstop)
	}
}

// handle decodes one ring-buffer record and sends its events. It returns
// true for a notice that a key started aggregating.
func (s *Source) handle(ctx context.Context, raw []byte, out chan<- fault.Event) bool {
	c := &s.counts
	if len(raw) < headerSize {
		c.malformed.Add(1)
		return false
	}
	kind := binary.LittleEndian.Uint32(raw)
	if kind == kindNotice {
		c.notices.Add(1)
		return true
	}
	c.records.Add(1)
	events, ok := s.decode(kind, raw, s.cfg.Now())
	if !ok {
		return false
	}
	for _, ev := range events {
		select {
		case out <- ev:
			c.events.Add(1)
		case <-ctx.Done():
			return false
		}
	}
	return false
}

// decode turns one wire record into events through the decoder registered
// for its tracepoint.
func (s *Source) decode(kind uint32, raw []byte, received time.Time) ([]fault.Event, bool) {
	c := &s.counts
	f, ok := s.formats[kind]
	if !ok || len(raw) < f.MinSize() {
		c.malformed.Add(1)
		s.log.WithFields(logrus.Fields{"kind": kind, "bytes": len(raw)}).Warn("malformed eBPF record")
		return nil, false
	}
	d, ok := s.decoders[kind]
	if !ok {
		c.noDecoder.Add(1)
		return nil, false
	}
	rec := tracefs.Record{Format: f, BufferCPU: int(binary.LittleEndian.Uint32(raw[4:])), Data: raw}
	events, err := safeDecode(d, &rec, received)
	if err != nil {
		c.undecodable.Add(1)
		s.log.WithFields(logrus.Fields{"event": f.Key(), "error": err.Error()}).Warn("cannot decode eBPF record")
		return nil, false
	}
	c.decoded.Add(1)
	for i := range events {
		events[i].Source = events[i].Source.ViaEBPF()
	}
	return events, true
}

// safeDecode keeps a decoder bug on one strange record from killing the
// source.
func safeDecode(d tracefs.Decoder, rec *tracefs.Record, received time.Time) (events []fault.Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			events, err = nil, fmt.Errorf("decoder panicked: %v", r)
		}
	}()
	return d(rec, received)
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
