package cpuoffline

import (
	"context"
	"errors"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

var testPaths = kpath.Under("/fake")

// recordingSleep stands in for the backoff sleep and remembers each wait.
type recordingSleep struct{ waits []time.Duration }

func (s *recordingSleep) sleep(ctx context.Context, d time.Duration) error {
	s.waits = append(s.waits, d)
	return ctx.Err()
}

// fourCPUs is the kernel lab's guest: cpu0 without an online file,
// cpu1..3 online.
func fourCPUs() *fakeFS {
	f := newFakeFS()
	f.Mkdir(testPaths.SysPath("devices/system/cpu/cpu0"))
	for c := 1; c < 4; c++ {
		f.Set(onlinePath(testPaths, c), "1\n")
	}
	return f
}

func TestIsolate(t *testing.T) {
	busy, again := syscall.EBUSY, syscall.EAGAIN
	ms := time.Millisecond
	tests := []struct {
		name       string
		resource   fault.Resource
		dryRun     bool
		setup      func(f *fakeFS)
		want       fault.Outcome
		attempts   int
		writes     []string // data written to cpu2/online (any cpu for refusals)
		waits      []time.Duration
		violations []string
		detail     string
	}{
		{name: "success first try", resource: "cpu:2", want: fault.OutcomeIsolated, attempts: 1, writes: []string{"0\n"}},
		{
			name: "EBUSY retried then success", resource: "cpu:2",
			setup: func(f *fakeFS) { f.WriteErrs[onlinePath(testPaths, 2)] = []error{busy, busy} },
			want:  fault.OutcomeIsolated, attempts: 3, writes: []string{"0\n", "0\n", "0\n"},
			waits: []time.Duration{100 * ms, 200 * ms},
		},
		{
			name: "EAGAIN retried until exhausted", resource: "cpu:2",
			setup: func(f *fakeFS) { f.WriteErrs[onlinePath(testPaths, 2)] = []error{again, again, again, again, again} },
			want:  fault.OutcomeFailed, attempts: 4, writes: []string{"0\n", "0\n", "0\n", "0\n"},
			waits: []time.Duration{100 * ms, 200 * ms, 400 * ms}, detail: "resource temporarily unavailable",
		},
		{
			name: "EIO fails at once", resource: "cpu:2",
			setup: func(f *fakeFS) { f.WriteErrs[onlinePath(testPaths, 2)] = []error{syscall.EIO} },
			want:  fault.OutcomeFailed, attempts: 1, writes: []string{"0\n"}, detail: "input/output error",
		},
		{
			name: "EPERM fails at once", resource: "cpu:2",
			setup: func(f *fakeFS) { f.WriteErrs[onlinePath(testPaths, 2)] = []error{syscall.EPERM} },
			want:  fault.OutcomeFailed, attempts: 1, writes: []string{"0\n"}, detail: "operation not permitted",
		},
		{
			name: "write accepted but still online", resource: "cpu:2",
			setup: func(f *fakeFS) { f.Frozen[onlinePath(testPaths, 2)] = true },
			want:  fault.OutcomeFailed, attempts: 1, writes: []string{"0\n"}, detail: "still reads 1",
		},
		{
			name: "already offline", resource: "cpu:2",
			setup: func(f *fakeFS) { f.Set(onlinePath(testPaths, 2), "0\n") },
			want:  fault.OutcomeIsolatedByOther, detail: "already offline",
		},
		{name: "dry run writes nothing", resource: "cpu:2", dryRun: true, want: fault.OutcomeDryRun, detail: "would write 0"},
		{name: "cpu0 refused", resource: "cpu:0", want: fault.OutcomeRefused, violations: []string{ViolationCPU0}},
		{
			name: "no online file refused", resource: "cpu:3",
			setup: func(f *fakeFS) {
				delete(f.Files, onlinePath(testPaths, 3))
				f.Mkdir(testPaths.SysPath("devices/system/cpu/cpu3"))
			},
			want: fault.OutcomeRefused, violations: []string{ViolationNoOnlineFile},
		},
		{name: "missing cpu", resource: "cpu:9", want: fault.OutcomeNotPresent},
		{name: "not a cpu", resource: "page:0x10", want: fault.OutcomeFailed, detail: "not a CPU"},
		{
			name: "garbage in online", resource: "cpu:2",
			setup: func(f *fakeFS) { f.Set(onlinePath(testPaths, 2), "maybe") },
			want:  fault.OutcomeFailed, detail: "unexpected content",
		},
		{
			name: "online empty is re-read, then garbage", resource: "cpu:2",
			setup: func(f *fakeFS) { f.Set(onlinePath(testPaths, 2), "") },
			want:  fault.OutcomeFailed, detail: "unexpected content",
			waits: []time.Duration{10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, 1280 * ms},
		},
		{
			name: "online unreadable", resource: "cpu:2",
			setup: func(f *fakeFS) { f.ReadErrs[onlinePath(testPaths, 2)] = syscall.EACCES },
			want:  fault.OutcomeFailed, detail: "permission denied",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fourCPUs()
			if tt.setup != nil {
				tt.setup(f)
			}
			sl := &recordingSleep{}
			now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			o := New(testPaths, f, Options{Sleep: sl.sleep, Now: func() time.Time { return now }})

			a := o.Isolate(context.Background(), tt.resource, tt.dryRun)

			require.Equal(t, tt.want, a.Outcome, a.Detail)
			require.Equal(t, Kind, a.Kind)
			require.Equal(t, tt.resource, a.Resource)
			require.Equal(t, now, a.Time)
			require.Equal(t, tt.attempts, a.Attempts)
			require.Equal(t, tt.writes, f.WritesTo("/online"))
			require.Equal(t, tt.waits, sl.waits)
			require.Equal(t, tt.violations, a.Violations)
			require.Contains(t, a.Detail, tt.detail)
			if tt.want == fault.OutcomeIsolated {
				require.Equal(t, "echo 1 > "+onlinePath(testPaths, 2), a.Undo)
				require.Equal(t, "0\n", string(f.Files[onlinePath(testPaths, 2)]))
			} else {
				require.Empty(t, a.Undo)
			}
		})
	}
}

func TestIsolateStopsWhenContextEnds(t *testing.T) {
	f := fourCPUs()
	f.WriteErrs[onlinePath(testPaths, 2)] = []error{syscall.EBUSY, syscall.EBUSY}
	ctx, cancel := context.WithCancel(context.Background())
	sleep := func(ctx context.Context, d time.Duration) error { cancel(); return ctx.Err() }
	o := New(testPaths, f, Options{Sleep: sleep})

	a := o.Isolate(ctx, fault.CPU(2), false)

	require.Equal(t, fault.OutcomeFailed, a.Outcome)
	require.Equal(t, 1, a.Attempts)
	require.Contains(t, a.Detail, "context canceled")
}

func TestIsolateRetriesOption(t *testing.T) {
	f := fourCPUs()
	f.WriteErrs[onlinePath(testPaths, 2)] = []error{syscall.EBUSY, syscall.EBUSY}
	o := New(testPaths, f, Options{Retries: -1, Sleep: (&recordingSleep{}).sleep})

	a := o.Isolate(context.Background(), fault.CPU(2), false)

	require.Equal(t, fault.OutcomeFailed, a.Outcome)
	require.Equal(t, 1, a.Attempts)
}

func TestRestore(t *testing.T) {
	tests := []struct {
		name    string
		cpu     int
		setup   func(f *fakeFS)
		wantErr error
		errText string
		writes  []string
	}{
		{name: "offline cpu comes back", cpu: 2, setup: func(f *fakeFS) { f.Set(onlinePath(testPaths, 2), "0\n") }, writes: []string{"1\n"}},
		{name: "online cpu left alone", cpu: 2},
		{
			name: "EBUSY retried", cpu: 2,
			setup: func(f *fakeFS) {
				f.Set(onlinePath(testPaths, 2), "0\n")
				f.WriteErrs[onlinePath(testPaths, 2)] = []error{syscall.EBUSY}
			},
			writes: []string{"1\n", "1\n"},
		},
		{
			name: "verify fails", cpu: 2,
			setup: func(f *fakeFS) {
				f.Set(onlinePath(testPaths, 2), "0\n")
				f.Frozen[onlinePath(testPaths, 2)] = true
			},
			wantErr: ErrVerify, writes: []string{"1\n"},
		},
		{
			name: "EIO", cpu: 2,
			setup: func(f *fakeFS) {
				f.Set(onlinePath(testPaths, 2), "0\n")
				f.WriteErrs[onlinePath(testPaths, 2)] = []error{syscall.EIO}
			},
			wantErr: syscall.EIO, writes: []string{"1\n"},
		},
		{name: "cpu0 has no online file", cpu: 0, wantErr: ErrNoOnlineFile},
		{name: "absent cpu", cpu: 7, wantErr: ErrNotPresent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fourCPUs()
			if tt.setup != nil {
				tt.setup(f)
			}
			o := New(testPaths, f, Options{Sleep: (&recordingSleep{}).sleep})
			err := o.Restore(context.Background(), tt.cpu)
			if tt.wantErr != nil {
				require.Error(t, err)
				require.True(t, errors.Is(err, tt.wantErr), "got %v", err)
			} else {
				require.NoError(t, err)
				require.Equal(t, "1", string(f.Files[onlinePath(testPaths, tt.cpu)][:1]))
			}
			require.Equal(t, tt.writes, f.WritesTo("cpu"+strconv.Itoa(tt.cpu)+"/online"))
		})
	}
}
