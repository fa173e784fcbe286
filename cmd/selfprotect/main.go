// Command selfprotect is the self-healing fault-isolation daemon and its CLI.
//
// The runtime keeps the GOMAXPROCS it starts with (the CPUs the process
// may run on, or its cgroup's limit): by default Go re-reads both from its
// sysmon thread, at most once a second, and a daemon idle between errors
// wakes sysmon at each error, so the re-read (sched_getaffinity and a
// cgroup file's read) lands on the way from the error to the kernel
// write, on the daemon's own CPU when it is pinned.
//
//go:debug updatemaxprocs=0
package main

import (
	"errors"
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	root := newRootCommand(os.Stdout, os.Stderr)
	if err := root.Execute(); err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			if ex.msg != "" {
				fmt.Fprintln(os.Stderr, "selfprotect:", ex.msg)
			}
			os.Exit(ex.code)
		}
		fmt.Fprintln(os.Stderr, "selfprotect:", err)
		os.Exit(1)
	}
}

// exitError carries a specific exit status (status uses 1, 2 and 3).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }
