package kernel

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDaemonTwoBoots is issue 11's real-kernel scenario: the state
// directory on a disk image shared by two boots of the same kernel. After
// the second boot the page and the CPU isolated in the first are isolated
// again with no new error (asserted from kpageflags and cpu2/online); with
// a deny-list added between the boots they are not, and the refusals are
// recorded and alerted. Each second boot gets its own copy of the disk.
func TestDaemonTwoBoots(t *testing.T) {
	forEachCell(t, true, func(t *testing.T, lab *Lab, cell Cell) {
		first, again, denied := TwoBootScenarios()
		dir := t.TempDir()
		disk := filepath.Join(dir, "state.img")
		require.NoError(t, MakeStateDisk(context.Background(), disk, 32<<20))

		// Three boots of a few minutes each; a loaded host slows
		// emulation several-fold, hence the generous guest timeout.
		opt := RunOptions{WithDaemon: true, Disk: disk, Timeout: 12 * time.Minute}
		rs1 := runScenario(t, lab, cell, first, opt)
		pfn := checkFirstBoot(t, rs1)

		disks := map[string]string{again.Name: filepath.Join(dir, "again.img"), denied.Name: filepath.Join(dir, "denied.img")}
		for _, d := range disks {
			require.NoError(t, CopyDisk(disk, d))
		}
		var wg sync.WaitGroup
		runs := map[string]*Run{}
		errs := map[string]error{}
		var mu sync.Mutex
		for _, sc := range []Scenario{again, denied} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				opt := opt
				opt.Disk = disks[sc.Name]
				run, err := lab.Run(context.Background(), cell, sc, opt)
				mu.Lock()
				runs[sc.Name], errs[sc.Name] = run, err
				mu.Unlock()
			}()
		}
		wg.Wait()
		rsAgain := runResults(t, cell, again, runs[again.Name], errs[again.Name])
		rsDenied := runResults(t, cell, denied, runs[denied.Name], errs[denied.Name])
		t.Run("again", func(t *testing.T) { checkSecondBoot(t, rsAgain, pfn) })
		t.Run("deny", func(t *testing.T) { checkDeniedBoot(t, rsDenied, pfn) })
		// The checks must tell the two apart: each fails on the other
		// boot's results, on what the kernel showed (the deny boot is
		// what a daemon that restores nothing leaves; the other, what
		// one ignoring the deny-list would).
		t.Run("checks-discriminate", func(t *testing.T) {
			f := failuresOf(func(c checker) { checkSecondBoot(c, rsDenied, pfn) })
			require.NotEmpty(t, f, "the restore checks passed on a boot that restored nothing")
			require.Contains(t, f[0], "isolated again (kpageflags)")
			f = failuresOf(func(c checker) { checkDeniedBoot(c, rsAgain, pfn) })
			require.NotEmpty(t, f, "the deny checks passed on a boot that isolated both")
			require.Contains(t, f[0], "is denied: not isolated again")
		})
	})
}

// requireDiskBoot checks what every boot of the scenario starts with: the
// inject and disk modules loaded and the state disk mounted (and
// unmounted cleanly at the end, so the next boot reads everything).
func requireDiskBoot(t checker, rs Results) {
	t.Helper()
	n := 0
	for _, r := range rs {
		if strings.HasPrefix(r.Step, "insmod:") {
			require.True(t, r.OK, "%s: %s", r.Step, r.Error)
			n++
		}
	}
	require.Greater(t, n, len(InjectModules), "the disk modules were loaded too")
	only(t, rs, "mount")
	only(t, rs, "umount")
}

// checkFirstBoot: two errors on a free page and five on CPU 2's cache;
// both isolated and recorded before the daemon is killed. It returns the
// page's resource name.
func checkFirstBoot(t checker, rs Results) string {
	t.Helper()
	requireDiskBoot(t, rs)
	page := pfnResource(only(t, rs, "free-page").String("pfn"))
	only(t, rs, "daemon-armed")
	requireAllOK(t, rs, "inject-page", 2)
	requireAllOK(t, rs, "inject-cpu2", 5)
	only(t, rs, "page-poisoned")
	only(t, rs, "cpu2-offline")
	only(t, rs, "recorded")
	cases := faultyCases(t, only(t, rs, "faulty"))
	require.Equal(t, "isolated", oneAction(t, cases, page, "soft-offline").Outcome)
	require.Equal(t, "isolated", oneAction(t, cases, "cpu:2", "cpu-offline").Outcome)
	t.Logf("boot 1: %s and cpu:2 isolated, daemon killed", page)
	return page
}

// outcomes lists the outcomes of every action of kind on resource, in
// store order (intents left out).
func outcomes(cases []faultyCase, resource, kind string) []string {
	var out []string
	for _, a := range actionsOn(cases, resource, kind) {
		out = append(out, a.Outcome)
	}
	return out
}

// requireNoNewError: the second boot's daemon received nothing, so
// whatever it did came from the state on the disk.
func requireNoNewError(t checker, rs Results) {
	t.Helper()
	st := only(t, rs, "status")
	require.EqualValues(t, 0, jsonField(st, "events", "received"), "no error reached the daemon in boot 2")
}

// checkSecondBoot: a fresh kernel (page clean, CPU 2 online), then the
// daemon on the same state isolates both again, with no new case.
func checkSecondBoot(t checker, rs Results, page string) {
	t.Helper()
	requireDiskBoot(t, rs)
	require.False(t, hwpoison(t, rs, "kpf-before"), "the reboot cleared the poison")
	online, _ := only(t, rs, "cpu2-before").Bool("online")
	require.True(t, online, "the reboot brought CPU 2 back")
	only(t, rs, "daemon-armed")
	// The kernel's word first: both boots print these steps, so the
	// discrimination check fails here, not on a step only one prints.
	require.True(t, hwpoison(t, rs, "kpf-after"), "%s isolated again (kpageflags)", page)
	online, _ = only(t, rs, "cpu2-after").Bool("online")
	require.False(t, online, "CPU 2 offlined again")
	require.Equal(t, 4.0, hwCorruptedDelta(t, rs), "one page poisoned, once")
	only(t, rs, "page-poisoned")
	only(t, rs, "cpu2-offline")
	only(t, rs, "recorded")
	requireNoNewError(t, rs)

	cases := faultyCases(t, only(t, rs, "faulty"))
	require.Len(t, cases, 2, "the two cases of boot 1, no new one: %+v", cases)
	require.Equal(t, []string{"isolated", "isolated"}, outcomes(cases, page, "soft-offline"), "boot 1's and boot 2's")
	require.Equal(t, []string{"isolated", "isolated"}, outcomes(cases, "cpu:2", "cpu-offline"))
	exit, _ := only(t, rs, "daemon-exit").Number("exit")
	require.Zero(t, exit)
}

// checkDeniedBoot: the deny-list added between the boots wins over the
// history: nothing isolated, both refusals recorded with the deny budget
// named, and alerted.
func checkDeniedBoot(t checker, rs Results, page string) {
	t.Helper()
	requireDiskBoot(t, rs)
	require.False(t, hwpoison(t, rs, "kpf-before"))
	only(t, rs, "daemon-armed")
	only(t, rs, "recorded")
	require.False(t, hwpoison(t, rs, "kpf-after"), "%s is denied: not isolated again", page)
	online, _ := only(t, rs, "cpu2-after").Bool("online")
	require.True(t, online, "CPU 2 is denied: stays online")
	require.Zero(t, hwCorruptedDelta(t, rs))
	only(t, rs, "alerted")
	requireNoNewError(t, rs)

	cases := faultyCases(t, only(t, rs, "faulty"))
	require.Len(t, cases, 2, "%+v", cases)
	for _, want := range []struct{ resource, kind, budget string }{
		{page, "soft-offline", "deny.pages"},
		{"cpu:2", "cpu-offline", "deny.cpus"},
	} {
		acts := actionsOn(cases, want.resource, want.kind)
		require.Len(t, acts, 2, "boot 1's isolation and boot 2's refusal on %s: %+v", want.resource, acts)
		require.Equal(t, "isolated", acts[0].Outcome)
		require.Equal(t, "refused", acts[1].Outcome)
		require.Contains(t, acts[1].Violations, want.budget)
	}
	alerts := only(t, rs, "alerts").String("stdout")
	require.Contains(t, alerts, "refused "+page)
	require.Contains(t, alerts, "refused cpu:2")
	exit, _ := only(t, rs, "daemon-exit").Number("exit")
	require.Zero(t, exit)
}
