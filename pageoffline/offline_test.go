package pageoffline

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
	"github.com/selfprotect/selfprotect/kpath/kpathtest"
)

type recordingSleep struct{ waits []time.Duration }

func (s *recordingSleep) sleep(ctx context.Context, d time.Duration) error {
	s.waits = append(s.waits, d)
	return ctx.Err()
}

const ms = time.Millisecond

type offlineCase struct {
	name     string
	resource fault.Resource
	dryRun   bool
	setup    func(k *fakeKernel)
	want     fault.Outcome
	attempts int
	writes   []string
	waits    []time.Duration
	detail   []string
	undo     bool
}

func runOfflineCases(t *testing.T, tests []offlineCase, hard bool) {
	t.Helper()
	// Each case twice: through an FS that opens every file at each use,
	// and through one that keeps descriptors, as the real one does for
	// kernel files: the outcomes must not tell them apart.
	for _, tt := range tests {
		for _, keep := range []bool{false, true} {
			name := tt.name
			if keep {
				name += " (kept descriptors)"
			}
			t.Run(name, func(t *testing.T) { runOfflineCase(t, tt, hard, keep) })
		}
	}
}

func runOfflineCase(t *testing.T, tt offlineCase, hard, keep bool) {
	k := newFakeKernel(t)
	if tt.setup != nil {
		tt.setup(k)
	}
	sl := &recordingSleep{}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var fsys kpath.FS = k.fs
	if keep {
		fsys = kpathtest.NewKeeping(k.fs)
	}
	o := New(testPaths, fsys, Options{Sleep: sl.sleep, Now: func() time.Time { return now }})
	r := tt.resource
	if r == "" {
		r = fault.Page(testPFN)
	}

	var a fault.Action
	file, kind := softOfflineFile, KindSoft
	if hard {
		a, file, kind = o.HardOffline(context.Background(), r, tt.dryRun), hardOfflineFile, KindHard
	} else {
		a = o.Isolate(context.Background(), r, tt.dryRun)
	}

	require.Equal(t, tt.want, a.Outcome, a.Detail)
	require.Equal(t, kind, a.Kind)
	require.Equal(t, r, a.Resource)
	require.Equal(t, now, a.Time)
	require.Equal(t, tt.attempts, a.Attempts)
	require.Equal(t, tt.writes, k.fs.WritesTo("_offline_page"))
	if len(tt.writes) > 0 {
		require.Equal(t, tt.writes, k.fs.WritesTo(file), "written to the right file")
	}
	require.Equal(t, tt.waits, sl.waits)
	for _, d := range tt.detail {
		require.Contains(t, a.Detail, d)
	}
	if tt.undo {
		require.Equal(t, "echo 0x2a21 > /fake/sys/kernel/debug/hwpoison/unpoison-pfn  # needs hwpoison-inject; production kernels: reboot", a.Undo)
	} else {
		require.Empty(t, a.Undo)
	}
}

func writeErrs(errs ...error) func(k *fakeKernel) {
	return func(k *fakeKernel) {
		k.fs.WriteErrs[testPaths.SysPath(softOfflineFile)] = errs
		k.fs.WriteErrs[testPaths.SysPath(hardOfflineFile)] = errs
	}
}

const addr = "0x2a21000\n" // PFN 0x2a21 << 12: a byte address, never the PFN

func TestSoftOffline(t *testing.T) {
	again := syscall.EAGAIN
	runOfflineCases(t, []offlineCase{
		{
			name: "success", want: fault.OutcomeIsolated, attempts: 1, writes: []string{addr}, undo: true,
			detail: []string{"wrote 0x2a21000", "after 1 read(s)", "HardwareCorrupted 0 kB → 4 kB", "reboot"},
		},
		{
			name: "poison lands on the third verify read", setup: func(k *fakeKernel) { k.delayReads = 3 },
			want: fault.OutcomeIsolated, attempts: 1, writes: []string{addr}, undo: true,
			waits: []time.Duration{10 * ms, 20 * ms}, detail: []string{"after 3 read(s)"},
		},
		{
			name: "EAGAIN retried then success", setup: writeErrs(again),
			want: fault.OutcomeIsolated, attempts: 2, writes: []string{addr, addr}, undo: true,
			waits: []time.Duration{100 * ms},
		},
		{
			name: "EAGAIN retried until exhausted", setup: writeErrs(again, again, again, again, again),
			want: fault.OutcomeFailed, attempts: 4, writes: []string{addr, addr, addr, addr},
			waits: []time.Duration{100 * ms, 200 * ms, 400 * ms}, detail: []string{"EAGAIN", "4 attempt(s)"},
		},
		{
			name: "EBUSY not retried", setup: writeErrs(syscall.EBUSY),
			want: fault.OutcomeFailed, attempts: 1, writes: []string{addr}, detail: []string{"EBUSY", "retrying does not help"},
		},
		{name: "EIO", setup: writeErrs(syscall.EIO), want: fault.OutcomeFailed, attempts: 1, writes: []string{addr}, detail: []string{"input/output error"}},
		{name: "EPERM", setup: writeErrs(syscall.EPERM), want: fault.OutcomeFailed, attempts: 1, writes: []string{addr}, detail: []string{"operation not permitted"}},
		{name: "EINVAL", setup: writeErrs(syscall.EINVAL), want: fault.OutcomeFailed, attempts: 1, writes: []string{addr}, detail: []string{"EINVAL"}},
		{
			name: "EOPNOTSUPP", setup: writeErrs(syscall.EOPNOTSUPP),
			want: fault.OutcomeFailed, attempts: 1, writes: []string{addr}, detail: []string{"soft offline is disabled"},
		},
		{name: "ENXIO", setup: writeErrs(syscall.ENXIO), want: fault.OutcomeNotPresent, attempts: 1, writes: []string{addr}},
		{
			name: "write accepted but never poisoned", setup: func(k *fakeKernel) { k.ignore = true },
			want: fault.OutcomeFailed, attempts: 1, writes: []string{addr},
			waits:  []time.Duration{10 * ms, 20 * ms, 40 * ms, 80 * ms},
			detail: []string{"HWPOISON) still clear after 5 read(s)", "HardwareCorrupted 0 kB → 0 kB"},
		},
		{
			name: "already poisoned: read first, no write", resource: fault.Page(poisonedPFN),
			want: fault.OutcomeIsolatedByOther, detail: []string{"already poisoned"},
		},
		{name: "dry run writes nothing", dryRun: true, want: fault.OutcomeDryRun, detail: []string{"would write 0x2a21000 to /fake/sys/devices/system/memory/soft_offline_page"}},
		{
			// The kernel honours the sysctl: it refuses the write.
			name: "enable_soft_offline=0: the kernel refuses, the detail says why",
			setup: func(k *fakeKernel) {
				k.fs.Set(testPaths.ProcPath("sys/vm/enable_soft_offline"), "0\n")
				writeErrs(syscall.EOPNOTSUPP)(k)
			},
			want: fault.OutcomeFailed, attempts: 1, writes: []string{addr},
			detail: []string{"disabled by vm.enable_soft_offline=0 (/fake/proc/sys/vm/enable_soft_offline): the kernel refused the write (EOPNOTSUPP)"},
		},
		{
			name:  "enable_soft_offline=1",
			setup: func(k *fakeKernel) { k.fs.Set(testPaths.ProcPath("sys/vm/enable_soft_offline"), "1\n") },
			want:  fault.OutcomeIsolated, attempts: 1, writes: []string{addr}, undo: true,
		},
		{
			name: "hugetlb page reported", resource: fault.Page(hugePFN), dryRun: true,
			want: fault.OutcomeDryRun, detail: []string{"hugetlb page"},
		},
		{name: "beyond max_pfn", resource: fault.Page(fakeMemoryPFNs), want: fault.OutcomeNotPresent, detail: []string{"beyond the end"}},
		{name: "beyond 52-bit space", resource: fault.Page(1 << 52), want: fault.OutcomeNotPresent},
		{name: "hole without struct page", resource: fault.Page(noPagePFN), want: fault.OutcomeNotPresent, detail: []string{"nopage"}},
		{name: "not a page", resource: "cpu:3", want: fault.OutcomeFailed, detail: []string{"not a page"}},
		{
			name: "kpageflags unreadable: no write", want: fault.OutcomeFailed, detail: []string{"permission denied"},
			setup: func(k *fakeKernel) { k.fs.ReadErrs[testPaths.ProcPath("kpageflags")] = syscall.EACCES },
		},
		{
			name: "meminfo missing still isolates", setup: func(k *fakeKernel) { k.fs.ReadErrs[testPaths.ProcPath("meminfo")] = syscall.ENOENT },
			want: fault.OutcomeIsolated, attempts: 1, writes: []string{addr}, undo: true, detail: []string{"HardwareCorrupted unavailable"},
		},
		{
			name: "EHWPOISON from a race", setup: writeErrs(unix.EHWPOISON),
			want: fault.OutcomeIsolatedByOther, attempts: 1, writes: []string{addr}, detail: []string{"EHWPOISON"},
		},
	}, false)
}

func TestHardOffline(t *testing.T) {
	runOfflineCases(t, []offlineCase{
		{name: "success", want: fault.OutcomeIsolated, attempts: 1, writes: []string{addr}, undo: true, detail: []string{"hard-offline of pfn 0x2a21 done"}},
		{
			name: "EHWPOISON means someone poisoned it first", setup: writeErrs(syscall.Errno(133)),
			want: fault.OutcomeIsolatedByOther, attempts: 1, writes: []string{addr}, detail: []string{"already poisoned"},
		},
		{name: "already poisoned: no write", resource: fault.Page(poisonedPFN), want: fault.OutcomeIsolatedByOther},
		{name: "dry run", dryRun: true, want: fault.OutcomeDryRun, detail: []string{"hard_offline_page"}},
		{
			name:  "enable_soft_offline=0 does not block hard offline",
			setup: func(k *fakeKernel) { k.fs.Set(testPaths.ProcPath("sys/vm/enable_soft_offline"), "0\n") },
			want:  fault.OutcomeIsolated, attempts: 1, writes: []string{addr}, undo: true,
		},
		{name: "EBUSY not retried", setup: writeErrs(syscall.EBUSY), want: fault.OutcomeFailed, attempts: 1, writes: []string{addr}},
		{
			name: "EAGAIN retried", setup: writeErrs(syscall.EAGAIN),
			want: fault.OutcomeIsolated, attempts: 2, writes: []string{addr, addr}, waits: []time.Duration{100 * ms}, undo: true,
		},
	}, true)
}

func TestOfflineStopsWhenContextEnds(t *testing.T) {
	k := newFakeKernel(t)
	writeErrs(syscall.EAGAIN, syscall.EAGAIN)(k)
	ctx, cancel := context.WithCancel(context.Background())
	sleep := func(ctx context.Context, d time.Duration) error { cancel(); return ctx.Err() }
	o := New(testPaths, k.fs, Options{Sleep: sleep})

	a := o.Isolate(ctx, fault.Page(testPFN), false)

	require.Equal(t, fault.OutcomeFailed, a.Outcome)
	require.Equal(t, 1, a.Attempts)
	require.Contains(t, a.Detail, "context canceled")
}

// IsolateAfter takes the caller's meminfo reading (the daemon's page
// budget) as the "before" of its HardwareCorrupted note instead of reading
// meminfo again on the way to the kernel write.
func TestIsolateAfterUsesCallersMemInfo(t *testing.T) {
	tests := []struct {
		name   string
		before MemInfoRead
		want   string
	}{
		{name: "reading", before: MemInfoRead{MemInfo: MemInfo{HasHardwareCorrupted: true, HardwareCorruptedKB: 100}},
			want: "HardwareCorrupted 100 kB → 4 kB"},
		{name: "failed reading", before: MemInfoRead{Err: syscall.EACCES}, want: "HardwareCorrupted unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel(t)
			o := New(testPaths, k.fs, Options{Sleep: (&recordingSleep{}).sleep})
			a := o.IsolateAfter(context.Background(), fault.Page(testPFN), false, tt.before)
			require.Equal(t, fault.OutcomeIsolated, a.Outcome, a.Detail)
			require.Contains(t, a.Detail, tt.want)
			k = newFakeKernel(t)
			o = New(testPaths, k.fs, Options{Sleep: (&recordingSleep{}).sleep})
			a = o.HardOfflineAfter(context.Background(), fault.Page(testPFN), false, tt.before)
			require.Equal(t, fault.OutcomeIsolated, a.Outcome, a.Detail)
			require.Contains(t, a.Detail, tt.want)
		})
	}
}

// The files on the way to a write are opened once and kept, where the FS
// can keep them: the second and third isolations open nothing, and a
// failed write drops the offline file's descriptor, so the next write
// opens it again. Open warms them up before the first isolation.
func TestOfflinerKeepsItsFiles(t *testing.T) {
	k := newFakeKernel(t)
	fsys := kpathtest.NewKeeping(k.fs)
	o := New(testPaths, fsys, Options{Sleep: (&recordingSleep{}).sleep})
	defer o.Close()
	o.Open(false)
	soft := testPaths.SysPath(softOfflineFile)
	want := map[string]int{
		testPaths.ProcPath("meminfo"): 1, testPaths.ProcPath("kpageflags"): 1,
		soft: 1, testPaths.SysPath(hardOfflineFile): 1,
	}
	require.Equal(t, want, fsys.Opens, "Open opens the files on the way to a write")
	for i := range uint64(3) {
		a := o.Isolate(context.Background(), fault.Page(testPFN+i), false)
		require.Equal(t, fault.OutcomeIsolated, a.Outcome, a.Detail)
	}
	require.Equal(t, want, fsys.Opens, "no file opened again")

	k.fs.WriteErrs[soft] = []error{syscall.EIO}
	a := o.Isolate(context.Background(), fault.Page(testPFN+3), false)
	require.Equal(t, fault.OutcomeFailed, a.Outcome)
	require.Contains(t, a.Detail, "(EIO)")
	a = o.Isolate(context.Background(), fault.Page(testPFN+4), false)
	require.Equal(t, fault.OutcomeIsolated, a.Outcome, a.Detail)
	want[soft] = 2
	require.Equal(t, want, fsys.Opens, "the offline file opened again after the failed write, only it")
}

// In dry-run the offline files are not opened: nothing will be written.
func TestOfflinerOpenDryRun(t *testing.T) {
	k := newFakeKernel(t)
	fsys := kpathtest.NewKeeping(k.fs)
	o := New(testPaths, fsys, Options{})
	o.Open(true)
	require.Zero(t, fsys.Opens[testPaths.SysPath(softOfflineFile)])
	require.Equal(t, 1, fsys.Opens[testPaths.ProcPath("meminfo")])
}
