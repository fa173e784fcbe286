package tracefs

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/internal/ktimer"
)

// kernelTicker ticks from a timerfd that Go's netpoller waits on
// (ktimer.FD), not from a runtime timer. Measured on an idle daemon (the
// simulator, strace -f and per-thread context switches), a time.Ticker's
// tick cost ~8 thread wake-ups: the runtime's sysmon sleeps only until the
// next timer, so it woke on every tick and again for the sweep's syscall;
// the thread that ran the timer woke a second, spinning one (GOMAXPROCS
// 2). A timerfd tick is a netpoll event: the one thread blocked in
// epoll_wait wakes and runs the sweep itself on the waiting goroutine, and
// sysmon sleeps on, as long as the sweep's own calls stay raw (pollNow).
func newKernelTicker(every time.Duration) (*ktimer.FD, error) {
	k, err := ktimer.Open()
	if err != nil {
		return nil, fmt.Errorf("the sweep timer: %w", err)
	}
	if err := k.Set(every); err != nil {
		k.Close()
		return nil, fmt.Errorf("the sweep timer: %w", err)
	}
	return k, nil
}

// tickEvery calls fn every period until ctx ends, from a kernelTicker, or
// from a time.Ticker where a timerfd cannot be had or fails (said to
// fallback, which may be nil).
func tickEvery(ctx context.Context, every time.Duration, fn func(), fallback func(error)) {
	k, err := newKernelTicker(every)
	if err == nil {
		defer k.Close()
		stop := context.AfterFunc(ctx, func() { k.Close() })
		defer stop()
		for k.Wait() {
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
