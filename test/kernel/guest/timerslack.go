package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cmdTimerSlack reproduces systemd's TimerSlackNSec=: `timerslack NS --
// CMD ARGS...` sets the timer slack and execs the command. The slack is
// the calling thread's, kept across exec and inherited by every thread
// the command makes, so exec must come from the thread that set it.
func cmdTimerSlack(_ env, args []string) (map[string]any, error) {
	ns, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil || ns == 0 {
		return nil, fmt.Errorf("timerslack: %q: want a positive number of nanoseconds", args[0])
	}
	if args[1] != "--" || len(args) < 3 {
		return nil, errors.New("timerslack: want NS -- CMD [ARGS]")
	}
	argv := args[2:]
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(ns), 0, 0, 0); err != nil {
		return nil, fmt.Errorf("prctl(PR_SET_TIMERSLACK, %d): %w", ns, err)
	}
	return nil, execCommand(argv)
}

// threadTimerSlacks lists each thread's timer slack in ns as "TID:NS".
// The file sits in /proc/TID, not under task/: a thread ID names it there
// as a process ID does.
func threadTimerSlacks(e env, pid int) (string, error) {
	return perThread(e, pid, func(tid string) (string, error) {
		p := e.paths.ProcPath(tid, "timerslack_ns")
		raw, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", p, err)
		}
		return strings.TrimSpace(string(raw)), nil
	})
}
