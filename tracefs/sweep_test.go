package tracefs

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// deafPipe is a trace_pipe_raw whose wake-ups go missing: a page written
// while a read waits is not handed to that read, which sleeps until its
// deadline (forever without one, as the kernel's lost wake-up did). The
// next read finds it.
type deafPipe struct {
	mu       sync.Mutex
	deadline time.Time
	pending  [][]byte
	wake     chan struct{} // deadline changed or closed
	closed   bool
	reads    atomic.Int32
}

func newDeafPipe() *deafPipe { return &deafPipe{wake: make(chan struct{}, 1)} }

func (p *deafPipe) put(page []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = append(p.pending, page)
}

func (p *deafPipe) Read(b []byte) (int, error) {
	p.reads.Add(1)
	p.mu.Lock()
	if len(p.pending) > 0 {
		n := copy(b, p.pending[0])
		p.pending = p.pending[1:]
		p.mu.Unlock()
		return n, nil
	}
	p.mu.Unlock()
	for {
		p.mu.Lock()
		closed, dl := p.closed, p.deadline
		p.mu.Unlock()
		if closed {
			return 0, os.ErrClosed
		}
		var timer <-chan time.Time
		if !dl.IsZero() {
			if !time.Now().Before(dl) {
				return 0, os.ErrDeadlineExceeded
			}
			timer = time.After(time.Until(dl))
		}
		select {
		case <-timer:
		case <-p.wake:
		}
	}
}

func (p *deafPipe) ReadNow(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) == 0 {
		return 0, nil
	}
	n := copy(b, p.pending[0])
	p.pending = p.pending[1:]
	return n, nil
}

func (p *deafPipe) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

func (p *deafPipe) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

// A record whose wake-up is lost is still read, by the next sweep: the
// bound on lateness. Without the sweep the read would wait forever.
func TestReaderSweepFindsRecordsWithoutWakeup(t *testing.T) {
	page := readPage(t, "6.12-amd", "cpu1.bin")
	pipe := newDeafPipe()
	p := &cpuPipe{cpu: 1, path: "deaf", f: pipe, draining: &atomic.Bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan []byte, 1)
	done := make(chan error, 1)
	go func() {
		done <- p.readPages(ctx, len(page), func(b []byte) bool {
			got <- append([]byte(nil), b...)
			return true
		})
	}()
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		sweepPipes(ctx, []*cpuPipe{p}, 20*time.Millisecond, nil)
	}()
	// Let the reader park first, so the page lands during its wait.
	require.Eventually(t, func() bool { return pipe.reads.Load() >= 1 }, 5*time.Second, time.Millisecond)
	pipe.put(page)
	select {
	case b := <-got:
		require.Equal(t, page, b)
	case <-time.After(10 * time.Second):
		t.Fatal("a page written without a wake-up was never read")
	}
	cancel()
	<-swept
	_ = pipe.Close()
	require.NoError(t, <-done)
}

// polledDeafPipe is a deaf pipe the sweeper can poll through a real pipe's
// descriptor: data in the real pipe stands for data in the trace buffer.
type polledDeafPipe struct {
	*deafPipe
	fd int
}

func (p polledDeafPipe) pollFD() (int, bool) { return p.fd, true }

// pollablePipe is a real pipe for poll(2): its write end and the
// descriptor of its read end (both closed when the test ends).
func pollablePipe(t *testing.T) (*os.File, int) {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); w.Close() })
	rc, err := r.SyscallConn()
	require.NoError(t, err)
	fd := -1
	require.NoError(t, rc.Control(func(f uintptr) { fd = int(f) }))
	return w, fd
}

// The sweeper wakes a reader only when the kernel says its buffer holds
// data: an idle machine's readers stay parked.
func TestSweeperWakesOnlyPipesWithData(t *testing.T) {
	w, fd := pollablePipe(t)
	_, efd := pollablePipe(t)
	empty, full := newDeafPipe(), newDeafPipe()
	sw := newSweeper([]*cpuPipe{
		{cpu: 0, f: polledDeafPipe{empty, efd}, draining: &atomic.Bool{}},
		{cpu: 1, f: polledDeafPipe{full, fd}, draining: &atomic.Bool{}},
	})
	require.Len(t, sw.polled, 2)
	require.Empty(t, sw.blind)

	sw.once()
	require.True(t, empty.deadline.IsZero(), "nothing to read: no wake-up")
	require.True(t, full.deadline.IsZero(), "nothing to read: no wake-up")

	_, err := w.Write([]byte{1})
	require.NoError(t, err)
	sw.once()
	require.True(t, empty.deadline.IsZero(), "nothing to read: no wake-up")
	require.False(t, full.deadline.IsZero(), "data waiting: the reader is woken")
}

// A real open pipe file offers its descriptor to the sweeper.
func TestOSPipeIsPolled(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer w.Close()
	p := &cpuPipe{f: osPipe{r}, draining: &atomic.Bool{}}
	sw := newSweeper([]*cpuPipe{p})
	require.Len(t, sw.polled, 1)
	require.NoError(t, r.Close())
	sw.once() // a closed descriptor (POLLNVAL) wakes nobody and fails nothing
}

// StopAfterDrain: every page already in the buffers is delivered, then Run
// returns nil without its context ending.
func TestSourceStopAfterDrain(t *testing.T) {
	ft := newFixtureTree(t, "6.12")
	ft.fifo = true
	inst := ft.open(t, Options{})
	src := NewSource(inst, map[string]Decoder{"mce/mce_record": testDecoder}, quietLogger(), nil)
	src.SetSweep(time.Hour) // only the drain may find them
	out := make(chan fault.Event, 64)
	done := make(chan error, 1)
	go func() { done <- src.Run(context.Background(), out) }()
	require.Eventually(t, func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return len(src.pipes) > 0
	}, 5*time.Second, time.Millisecond)
	feed(t, inst, 1, readPage(t, "6.12-amd", "cpu1.bin"))
	feed(t, inst, 2, readPage(t, "6.12-amd", "cpu2.bin"))
	src.StopAfterDrain()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after StopAfterDrain")
	}
	require.Len(t, out, 3+5, "every record of both pages")
}
