package main

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestDisableTHP(t *testing.T) {
	// The flag is per process and sticks; the test binary keeps it.
	require.NoError(t, disableTHP())
	on, err := unix.PrctlRetInt(unix.PR_GET_THP_DISABLE, 0, 0, 0, 0)
	require.NoError(t, err)
	require.Equal(t, 1, on)
}

func TestHeapProfilingOffByDefault(t *testing.T) {
	require.Zero(t, runtime.MemProfileRate, "set by the package initializer, before main")
}
