package main

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// defaultMemProfileRate is the Go runtime's own sampling rate of heap
// allocations (runtime.MemProfileRate's initial value).
const defaultMemProfileRate = 512 * 1024

// Heap profiling is off unless a heap profile is asked for (run
// --heap-profile): its first sample maps a 1.4 MB bucket table and each
// new allocation site writes into it and into its own bucket, resident
// pages a daemon pays for with nobody reading them. The earlier the rate
// is set the fewer sites get sampled, hence the package initializer.
var _ = func() int { runtime.MemProfileRate = 0; return 0 }()

// disableTHP opts the process out of transparent huge pages. Where the
// kernel backs anonymous memory with them on its own (Debian's kernels:
// transparent_hugepage=always), a touched byte of the Go heap or of
// SQLite's C heap can cost a whole 2 MB page, and khugepaged (which by
// default collapses a 2 MB range holding a single touched page) grows the
// resident set of an idle process over time: the idle daemon's few MB of
// heap showed as 4 MB of huge pages in the guest. The daemon gains
// nothing from them: its working set is a few MB, not a TLB's worth.
func disableTHP() error {
	if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_THP_DISABLE): %w", err)
	}
	return nil
}
