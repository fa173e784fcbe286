package tracefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelTicker ticks from a timerfd that Go's netpoller waits on, not from
// a runtime timer. Measured on an idle daemon (the simulator, strace -f and
// per-thread context switches), a time.Ticker's tick cost ~8 thread
// wake-ups: the runtime's sysmon sleeps only until the next timer, so it
// woke on every tick and again for the sweep's syscall; the thread that ran
// the timer woke a second, spinning one (GOMAXPROCS 2). A timerfd tick is a
// netpoll event: the one thread blocked in epoll_wait wakes and runs the
// sweep itself, and sysmon sleeps on, as long as the tick is read without
// entering the runtime's syscall path (read and poll here are raw: neither
// can block).
type kernelTicker struct {
	f  *os.File
	rc syscall.RawConn
}

func newKernelTicker(every time.Duration) (*kernelTicker, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating the sweep timer: %w", err)
	}
	ts := unix.NsecToTimespec(int64(every))
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("arming the sweep timer: %w", err)
	}
	// A non-blocking descriptor: NewFile registers it with the netpoller.
	f := os.NewFile(uintptr(fd), "sweep-timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sweep timer: %w", err)
	}
	return &kernelTicker{f: f, rc: rc}, nil
}

// wait blocks until the timer expires (true) or the ticker is stopped or
// fails (false). Expirations missed while the sweep ran count as one.
func (k *kernelTicker) wait() bool {
	var buf [8]byte
	var errno syscall.Errno
	err := k.rc.Read(func(fd uintptr) bool {
		_, _, errno = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		return errno != unix.EAGAIN // EAGAIN: not yet, park in the netpoller
	})
	return err == nil && errno == 0
}

// stop ends a wait in progress and every later one.
func (k *kernelTicker) stop() { _ = k.f.Close() }

// tickEvery calls fn every period until ctx ends, from a kernelTicker, or
// from a time.Ticker where a timerfd cannot be had or fails (said to
// fallback, which may be nil).
func tickEvery(ctx context.Context, every time.Duration, fn func(), fallback func(error)) {
	k, err := newKernelTicker(every)
	if err == nil {
		defer k.stop()
		stop := context.AfterFunc(ctx, k.stop)
		defer stop()
		for k.wait() {
			if ctx.Err() != nil {
				return
			}
			fn()
		}
		if ctx.Err() != nil {
			return
		}
		err = errors.New("reading the sweep timer failed")
	}
	if fallback != nil {
		fallback(err)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// pollNow is poll(2) with a zero timeout, made raw: it never blocks, so
// the runtime need not know (see kernelTicker).
func pollNow(fds []unix.PollFd) error {
	if len(fds) == 0 {
		return nil
	}
	var ts unix.Timespec
	_, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)),
		uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
