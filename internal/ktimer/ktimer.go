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
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FD is a timerfd Go's netpoller waits on: the primitive under Ticker,
// for a caller that runs its work on the waiting goroutine itself (the
// tracefs sweep) rather than take ticks from a channel.
type FD struct {
	f  *os.File
	rc syscall.RawConn
}

// Open returns a disarmed timerfd, or an error when the kernel gives none
// (the caller falls back to a time.Ticker).
func Open() (*FD, error) {
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
	return &FD{f: f, rc: rc}, nil
}

// Set arms the timer to expire every period, the first a full period from
// now; 0 disarms it.
func (k *FD) Set(every time.Duration) error {
	ts := unix.NsecToTimespec(int64(every))
	spec := unix.ItimerSpec{Interval: ts, Value: ts}
	var errno syscall.Errno
	err := k.rc.Control(func(fd uintptr) {
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

// Wait blocks until the timer expires (true) or the descriptor is closed
// or fails (false). Expirations missed meanwhile count as one.
func (k *FD) Wait() bool {
	var buf [8]byte
	var errno syscall.Errno
	err := k.rc.Read(func(fd uintptr) bool {
		_, _, errno = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		return errno != unix.EAGAIN // EAGAIN: not yet, park in the netpoller
	})
	return err == nil && errno == 0
}

// Close ends a Wait in progress and every later one.
func (k *FD) Close() error { return k.f.Close() }

// Ticker delivers ticks on C while armed. A goroutine waits on the
// timerfd and forwards each expiry; expirations missed meanwhile count as
// one, and a tick nobody took yet is not doubled.
type Ticker struct {
	fd *FD
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
	fd, err := Open()
	if err != nil {
		return nil, err
	}
	t := &Ticker{fd: fd, c: make(chan time.Time, 1), done: make(chan struct{})}
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
	if err := t.fd.Set(every); err != nil {
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
	return t.fd.Set(0)
}

// Close stops the ticker for good and ends its goroutine.
func (t *Ticker) Close() {
	_ = t.fd.Close() // wakes the wait
	<-t.done
}

func (t *Ticker) forward() {
	defer close(t.done)
	for t.fd.Wait() {
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
