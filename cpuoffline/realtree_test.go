package cpuoffline

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

// failingOS is kpath.OS with errno injected on chosen writes.
type failingOS struct {
	kpath.OS
	errs   map[string][]error
	writes int
}

func (f *failingOS) WriteFile(name string, data []byte) error {
	f.writes++
	if q := f.errs[name]; len(q) > 0 {
		f.errs[name] = q[1:]
		return &os.PathError{Op: "write", Path: name, Err: q[0]}
	}
	return f.OS.WriteFile(name, data)
}

func TestIsolateOnTempTree(t *testing.T) {
	root := t.TempDir()
	treeFromListing(t, filepath.Join("testdata", "sysfs-cpu-6.12-intel.txt"), root)
	p := kpath.Under(root)
	fsys := &failingOS{errs: map[string][]error{onlinePath(p, 2): {syscall.EBUSY}}}
	o := New(p, fsys, Options{Sleep: (&recordingSleep{}).sleep})
	ctx := context.Background()

	require.Equal(t, fault.OutcomeRefused, o.Isolate(ctx, fault.CPU(0), false).Outcome)
	require.Equal(t, fault.OutcomeNotPresent, o.Isolate(ctx, fault.CPU(4), false).Outcome)
	require.Equal(t, fault.OutcomeDryRun, o.Isolate(ctx, fault.CPU(2), true).Outcome)
	require.Zero(t, fsys.writes, "refusals and dry runs write nothing")

	a := o.Isolate(ctx, fault.CPU(2), false)
	require.Equal(t, fault.OutcomeIsolated, a.Outcome, a.Detail)
	require.Equal(t, 2, a.Attempts)
	require.Equal(t, "echo 1 > "+filepath.Join(root, "sys/devices/system/cpu/cpu2/online"), a.Undo)
	got, err := os.ReadFile(onlinePath(p, 2))
	require.NoError(t, err)
	require.Equal(t, "0\n", string(got))

	require.Equal(t, fault.OutcomeIsolatedByOther, o.Isolate(ctx, fault.CPU(2), false).Outcome)
	require.NoError(t, o.Restore(ctx, 2))
	got, err = os.ReadFile(onlinePath(p, 2))
	require.NoError(t, err)
	require.Equal(t, "1\n", string(got))
}
