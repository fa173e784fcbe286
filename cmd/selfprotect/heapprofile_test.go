package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"
)

// The profile must come from the signal, after the daemon started, and
// say what the runtime holds: the idle bench reads both.
func TestHeapProfileOnSIGUSR1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idle.heap")
	log, hook := test.NewNullLogger()
	stop := startHeapProfile(path, log)
	defer stop()
	_, err := os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "no profile before the signal")

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGUSR1))
	var entry *logrus.Entry
	require.Eventually(t, func() bool {
		for _, e := range hook.AllEntries() {
			if e.Message == "heap profile written" {
				entry = e
				return true
			}
		}
		return false
	}, time.Minute, 10*time.Millisecond)
	require.Equal(t, path, entry.Data["file"])
	require.Contains(t, entry.Data["runtime"], "heap/objects=")
	require.Contains(t, entry.Data["runtime"], "total=")

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(raw, []byte{0x1f, 0x8b}), "a pprof profile is gzipped")
}

func TestMemoryClasses(t *testing.T) {
	got := memoryClasses()
	for _, f := range strings.Fields(got) {
		name, kb, ok := strings.Cut(f, "=")
		require.True(t, ok, f)
		require.NotContains(t, name, "/memory/classes/")
		require.NotContains(t, name, ":bytes")
		require.NotEqual(t, "0", kb, "zero classes are left out")
	}
	require.Contains(t, got, "heap/objects=")
}
