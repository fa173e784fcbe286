package daemon

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/store"
)

// A failing store holds writes in order and degrades status; once it
// takes writes again they land oldest first, and status is healthy.
func TestPersistHoldsInOrderAndRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failures  int // the store fails this many calls, then works
		wantHeld  int
		wantOrder []int
	}{
		{"healthy store", 0, 0, []int{0, 1, 2}},
		{"store down for the first write", 1, 3, []int{0, 1, 2}},
		{"store down for two tries", 2, 3, []int{0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := quietDaemon(t)
			fails := tc.failures
			var landed []int
			for i := range 3 {
				d.persist(fmt.Sprint("write ", i), func() error {
					if fails > 0 {
						fails--
						return errors.New("disk full")
					}
					landed = append(landed, i)
					return nil
				})
			}
			require.Equal(t, int64(tc.wantHeld), d.writes.heldN.Load())
			if tc.wantHeld > 0 {
				require.Contains(t, d.Status().Problems, "store writes failing: 3 records held in memory and retried (last error: disk full)")
				require.True(t, d.Status().Degraded)
			}
			for range tc.failures + 1 {
				d.retryWrites()
			}
			require.Equal(t, tc.wantOrder, landed)
			require.Zero(t, d.writes.heldN.Load())
			require.Equal(t, uint64(tc.failures), d.Status().StoreFailures)
			require.False(t, d.Status().Degraded)
		})
	}
}

// A write naming a case the store lacks cannot succeed by retrying: it is
// dropped (and logged), not held forever in front of the others.
func TestPersistDropsWhatRetryCannotFix(t *testing.T) {
	d := quietDaemon(t)
	require.False(t, d.persist("orphan", func() error { return fmt.Errorf("case x: %w", store.ErrNotFound) }))
	require.Zero(t, d.writes.heldN.Load())
}
