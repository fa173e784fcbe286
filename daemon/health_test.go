package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// The health check's "isolated by us" comes from memory: with the store
// closed it still answers, and the kernel's or another actor's isolations
// are not ours.
func TestIsolatedByUsReadsMemory(t *testing.T) {
	d := quietDaemon(t)
	require.NoError(t, d.store.Close())
	d.mu.Lock()
	for _, r := range []fault.Resource{fault.Page(0x10), fault.CPU(2), fault.Page(0x30)} {
		d.isolated.add(r)
	}
	d.byOther[fault.Page(0x30)] = true
	d.mu.Unlock()
	require.Equal(t, []fault.Resource{fault.CPU(2), fault.Page(0x10)}, d.isolatedByUs())
}

// A health check that reads the kernel while an action of ours is in
// flight (written, not yet recorded) does not call its page another
// actor's; a page retired while no action runs is.
func TestRetiredByOthersNotCalledMidAction(t *testing.T) {
	d := quietDaemon(t)
	hook := logtest.NewLocal(d.log)
	d.log.SetLevel(logrus.InfoLevel)
	meminfo := func(kb int) {
		t.Helper()
		path := d.opts.Paths.ProcPath("meminfo")
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, fmt.Appendf(nil, "MemTotal: 1048576 kB\nHardwareCorrupted: %d kB\n", kb), 0o644))
	}
	notices := func() int {
		n := 0
		for _, e := range hook.AllEntries() {
			if strings.Contains(e.Message, "retired by others") {
				n++
			}
		}
		return n
	}

	// Our soft offline wrote the kernel; the worker has not recorded it.
	d.actGen.Add(1)
	meminfo(4)
	d.checkHealth()
	require.Zero(t, notices(), "mid-action: the page may be ours")
	d.mu.Lock()
	d.isolated.add(fault.Page(0x10))
	d.mu.Unlock()
	d.actGen.Add(1)
	d.checkHealth() // the check the action asks for when it is done
	require.Zero(t, notices(), "recorded: the page is ours")

	// Another actor retires a page while nothing of ours runs.
	meminfo(8)
	d.checkHealth()
	require.Equal(t, 1, notices())
	d.checkHealth()
	require.Equal(t, 1, notices(), "said once")
}
