package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

// The kernel suite's hand-over scenario holds eBPF back with
// EBPFArmAfter: until then it is unavailable for that reason, and the
// table retries it when the hold ends; from then on openEBPF gives
// ebpfsource's own answer. Off, nothing is held back and the retry stays
// long.
func TestEBPFArmAfterHoldsEBPFBackThenRetries(t *testing.T) {
	start := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		armAfter  time.Duration
		at        time.Duration // after start
		held      bool
		wantRetry time.Duration
	}{
		{name: "off", armAfter: 0, at: 0, held: false, wantRetry: 10 * time.Minute},
		{name: "at start", armAfter: 8 * time.Second, at: 0, held: true, wantRetry: 8 * time.Second},
		{name: "just before", armAfter: 8 * time.Second, at: 8*time.Second - time.Millisecond, held: true, wantRetry: 8 * time.Second},
		{name: "due", armAfter: 8 * time.Second, at: 8 * time.Second, held: false, wantRetry: 8 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: start}
			log := logrus.New()
			log.SetOutput(discard{})
			// A tracing root that is not the running kernel's: past the
			// hold, ebpfsource refuses it as not supported.
			d, err := New(Options{Paths: kpath.Under(t.TempDir()), Log: log, Now: clock.now, EBPFArmAfter: tc.armAfter})
			require.NoError(t, err)
			d.started = start
			clock.t = start.Add(tc.at)

			var row sourceDef
			for _, r := range d.sourceTable() {
				if r.name == "ebpf" {
					row = r
				}
			}
			require.Equal(t, tc.wantRetry, row.retry)

			src, _, err := row.open(context.Background())
			require.Nil(t, src)
			require.ErrorIs(t, err, fault.ErrUnavailable)
			if tc.held {
				require.Contains(t, err.Error(), "--test-ebpf-arm-after")
			} else {
				require.NotContains(t, err.Error(), "--test-ebpf-arm-after")
				require.Contains(t, err.Error(), "not the running kernel's tracefs")
			}
		})
	}
}
