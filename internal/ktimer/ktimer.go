// Package ktimer ticks from a timerfd that Go's netpoller waits on, not
// from a runtime timer.
//
// The runtime's sysmon thread sleeps only until the next runtime timer,
// so every time.Ticker tick wakes it besides the thread that runs the
// timer, and under emulation each wake-up costs more than the work it
// brings. A timerfd's expiry is a netpoll event instead: the one thread
// blocked in epoll_wait wakes and runs the goroutines it readies, and
// sysmon sleeps on (measured on the tracefs sweep first, whose tick cost
// ~8 thread wake-ups as a time.Ticker and ~1 as a timerfd). The timerfd is
// read and armed with raw system calls, which cannot block and so need
// not tell the runtime (a runtime system call would wake sysmon again).
package ktimer

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ticker delivers ticks on C while armed. A goroutine waits on the
// timerfd and forwards each expiry; expirations missed meanwhile count as
// one, and a tick nobody took yet is not doubled.
type Ticker struct {
	f  *os.File
	rc syscall.RawConn
	c  chan time.Time
	// mu orders a forwarded tick against Stop: after Stop returns, no
	// tick is in C or on its way.
	mu    sync.Mutex
	armed bool
	done  chan struct{}
}

// New returns a stopped Ticker, or an error when the kernel gives no
// timerfd (the caller falls back to a time.Ticker).
func New() (*Ticker, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating a timerfd: %w", err)
	}
	// A non-blocking descriptor: NewFile registers it with the netpoller.
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	t := &Ticker{f: f, rc: rc, c: make(chan time.Time, 1), done: make(chan struct{})}
	go t.forward()
	return t, nil
}

// C delivers the ticks.
func (t *Ticker) C() <-chan time.Time { return t.c }

// Reset arms the ticker: the first tick a full period from now.
func (t *Ticker) Reset(every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("ticker period %v: want a positive duration", every)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.settime(every); err != nil {
		return err
	}
	t.armed = true
	return nil
}

// Stop disarms the ticker and drops a tick not taken yet.
func (t *Ticker) Stop() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.armed = false
	select {
	case <-t.c:
	default:
	}
	return t.settime(0)
}

// Close stops the ticker for good and ends its goroutine.
func (t *Ticker) Close() {
	_ = t.f.Close() // wakes the wait
	<-t.done
}

// settime arms (every > 0) or disarms (0) the timerfd.
func (t *Ticker) settime(every time.Duration) error {
	ts := unix.NsecToTimespec(int64(every))
	spec := unix.ItimerSpec{Interval: ts, Value: ts}
	var errno syscall.Errno
	err := t.rc.Control(func(fd uintptr) {
		_, _, errno = unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	})
	if err != nil {
		return fmt.Errorf("arming the timerfd: %w", err)
	}
	if errno != 0 {
		return fmt.Errorf("arming the timerfd: %w", errno)
	}
	return nil
}

func (t *Ticker) forward() {
	defer close(t.done)
	for t.wait() {
		t.mu.Lock()
		if t.armed {
			select {
			case t.c <- time.Now():
			default: // the last tick is still there: one is enough
			}
		}
		t.mu.Unlock()
	}
}

// wait blocks until the timer expires (true) or the ticker is closed or
// fails (false).
func (t *Ticker) wait() bool {
	var buf [8]byte
	var errno syscall.Errno
	err := t.rc.Read(func(fd uintptr) bool {
		_, _, errno = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		return errno != unix.EAGAIN // EAGAIN: not yet, park in the netpoller
	})
	if err != nil && !errors.Is(err, os.ErrClosed) {
		return false
	}
	return err == nil && errno == 0
}
