package tracefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// Decoder turns one record into normalized events. It runs on the reading
// goroutine of the record's CPU, so Data is only valid during the call.
// A record may give no event (filtered out) or several. When it returns an
// error its events are dropped and the record is counted as undecodable.
type Decoder func(rec *Record, received time.Time) ([]fault.Event, error)

// cpuPipe is one open per_cpu/cpuN/trace_pipe_raw.
type cpuPipe struct {
	cpu  int
	path string
	f    *os.File
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
	return &cpuPipe{cpu: cpu, path: path, f: f}, nil
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
func (p *cpuPipe) readPages(ctx context.Context, size int, handle func(page []byte) bool) error {
	page := make([]byte, size)
	off := 0
	pause := time.Duration(0)
	for {
		n, err := p.f.Read(page[off:])
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
