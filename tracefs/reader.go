package tracefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/fault"
)

// Decoder turns one record into normalized events. It runs on the reading
// goroutine of the record's CPU, so Data is only valid during the call.
// A record may give no event (filtered out) or several. When it returns an
// error its events are dropped and the record is counted as undecodable.
type Decoder func(rec *Record, received time.Time) ([]fault.Event, error)

// pipeFile is what readPages needs of an open trace_pipe_raw (an
// *os.File); tests stand in a file whose wake-ups go missing.
type pipeFile interface {
	Read(b []byte) (int, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// cpuPipe is one open per_cpu/cpuN/trace_pipe_raw.
type cpuPipe struct {
	cpu  int
	path string
	f    pipeFile
	// draining is set by Source.StopAfterDrain: read what is there, then
	// return.
	draining *atomic.Bool
}

// DefaultSweep is how often the buffers are checked for records whose
// wake-up went missing. The kernel's poll wake-up for trace_pipe_raw has
// been seen to go missing (records waited ~10 s, until an unrelated record
// came): the sweep bounds how late a record can be, at the cost of one
// poll(2) over every CPU's pipe and one thread wake-up per sweep when idle
// (kernelTicker).
const DefaultSweep = 400 * time.Millisecond

// nowReader is a pipe that can read without waiting (osPipe).
type nowReader interface {
	ReadNow(b []byte) (int, error)
}

// readNow reads what is there without waiting for it. A file without
// ReadNow is one the poller does not manage (a regular file in tests),
// whose reads never wait anyway.
func (p *cpuPipe) readNow(b []byte) (int, error) {
	if r, ok := p.f.(nowReader); ok {
		return r.ReadNow(b)
	}
	return p.f.Read(b)
}

// osPipe is an open pipe file that can also be read without waiting.
type osPipe struct{ *os.File }

// ReadNow makes one non-blocking read(2): (0, nil) when nothing is there.
// It goes around the poller, whose deadline check would refuse to read at
// all once StopAfterDrain has set a deadline in the past.
func (p osPipe) ReadNow(b []byte) (int, error) {
	if err := p.SetReadDeadline(time.Time{}); err != nil {
		return p.Read(b) // not pollable: a read does not wait
	}
	rc, err := p.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", p.Name(), err)
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), b)
		return true
	}); err != nil {
		return 0, err
	}
	switch {
	case errors.Is(rerr, unix.EAGAIN):
		return 0, nil
	case rerr != nil:
		return 0, rerr
	}
	return max(n, 0), nil
}

// openPipe opens a trace_pipe_raw for blocking page reads that Close can
// interrupt. On tracefs the file is pollable, so Go's poller parks the read
// and Close wakes it. The simulator uses FIFOs instead: those are opened
// read-write, because a read-only open would block until a writer appears
// (uninterruptibly) and a FIFO whose writer left reads as end-of-file;
// holding a write end ourselves makes it behave like the kernel's pipe.
func openPipe(cpu int, path string) (*cpuPipe, error) {
	flag := os.O_RDONLY
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	} else if st.Mode()&fs.ModeNamedPipe != 0 {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &cpuPipe{cpu: cpu, path: path, f: osPipe{f}, draining: &atomic.Bool{}}, nil
}

// readPages reads whole pages until the pipe fails or is closed, handing
// each to handle. Pages may arrive in pieces (FIFOs), so reads are gathered
// into exactly one page. It returns nil when ctx ended (the pipe was closed
// under it), else the read error.
//
// A read that returns no bytes is not the end of the stream: the kernel's
// trace_pipe_raw returns 0 when the buffer holds events it cannot hand out
// as a page yet (a writer is still on the reader page, seen under a CE
// storm). Such reads are retried after a short, growing pause so an
// instance in that state costs no busy loop.
//
// A read waits for data until something sets a deadline: the sweeper
// (sweepPipes) when the pipe has data the read was not woken for, or
// StopAfterDrain. The loop then reads again. Once draining is set, reads
// never wait and the first one that finds nothing at a page boundary ends
// the loop (nil).
func (p *cpuPipe) readPages(ctx context.Context, size int, handle func(page []byte) bool) error {
	page := make([]byte, size)
	off := 0
	pause := time.Duration(0)
	for {
		var n int
		var err error
		if p.draining.Load() {
			n, err = p.readNow(page[off:])
			if n == 0 && off == 0 && (err == nil || errors.Is(err, io.EOF)) {
				return nil
			}
		} else {
			n, err = p.f.Read(page[off:])
		}
		off += n
		if off == size {
			off, pause = 0, 0
			if !handle(page) {
				return nil
			}
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case n > 0:
			pause = 0
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The sweep, or StopAfterDrain waking us: read again. The
			// deadline goes before the draining check at the top, so a
			// drain that sets it again after this is still seen.
			_ = p.f.SetReadDeadline(time.Time{})
		case err == nil || errors.Is(err, io.EOF):
			pause = min(max(2*pause, 500*time.Microsecond), 50*time.Millisecond)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pause):
			}
		default:
			return fmt.Errorf("reading %s: %w", p.path, err)
		}
	}
}

// pollFD is the descriptor of a pipe the sweeper can poll(2).
type pollFD interface {
	pollFD() (int, bool)
}

// pollFD returns the descriptor without making it blocking (os.File.Fd
// would); it stays valid until Close, which Run does only after the
// sweeper has stopped.
func (p osPipe) pollFD() (int, bool) {
	rc, err := p.SyscallConn()
	if err != nil {
		return 0, false
	}
	fd := -1
	if rc.Control(func(f uintptr) { fd = int(f) }) != nil || fd < 0 {
		return 0, false
	}
	return fd, true
}

// sweepPipes runs until ctx ends. Every period it asks the kernel, in one
// poll(2) over every CPU's pipe, which buffers hold data, and wakes those
// pipes' readers (a read deadline in the past): a reader whose poll
// wake-up was lost then reads again and finds its records. One timer for
// all CPUs, where a deadline per read cost a wake-up per CPU per period,
// ticking from a timerfd, where a runtime timer cost ~8 (kernelTicker).
// fallback hears why the sweep ticks from a runtime timer instead (nil:
// nobody asks).
func sweepPipes(ctx context.Context, pipes []*cpuPipe, every time.Duration, fallback func(error)) {
	tickEvery(ctx, every, newSweeper(pipes).once, fallback)
}

// sweeper is one Run's pipes, sorted by whether they can be polled. A
// pipe without a descriptor to poll (a test's fake) is woken every sweep.
type sweeper struct {
	polled, blind []*cpuPipe
	fds           []unix.PollFd
}

func newSweeper(pipes []*cpuPipe) *sweeper {
	sw := &sweeper{}
	for _, p := range pipes {
		if f, ok := p.f.(pollFD); ok {
			if fd, ok := f.pollFD(); ok {
				sw.polled = append(sw.polled, p)
				sw.fds = append(sw.fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
				continue
			}
		}
		sw.blind = append(sw.blind, p)
	}
	return sw
}

// once wakes the readers of the pipes that hold data now.
func (sw *sweeper) once() {
	for i := range sw.fds {
		sw.fds[i].Revents = 0
	}
	err := pollNow(sw.fds)
	for i, p := range sw.polled {
		// An error of poll itself: wake them all rather than guess.
		if err != nil || sw.fds[i].Revents&^unix.POLLNVAL != 0 {
			_ = p.f.SetReadDeadline(time.Now())
		}
	}
	for _, p := range sw.blind {
		_ = p.f.SetReadDeadline(time.Now())
	}
}
