package kpath

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// failingFS fails the first n writes with err.
type failingFS struct {
	OS
	n      int
	err    error
	writes int
}

func (f *failingFS) WriteFile(name string, data []byte) error {
	f.writes++
	if f.writes <= f.n {
		return f.err
	}
	return nil
}

func TestWriteRetrying(t *testing.T) {
	busy := func(err error) bool { return errors.Is(err, syscall.EBUSY) }
	tests := []struct {
		name       string
		failures   int
		err        error
		retries    int
		wantWrites int
		wantErr    error
		wantSleeps []time.Duration
	}{
		{"first write works", 0, nil, 3, 1, nil, nil},
		{"busy twice then works", 2, syscall.EBUSY, 3, 3, nil, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}},
		{"busy past the retries", 9, syscall.EBUSY, 2, 3, syscall.EBUSY, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}},
		{"EIO is not retried", 9, syscall.EIO, 3, 1, syscall.EIO, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &failingFS{n: tc.failures, err: tc.err}
			var sleeps []time.Duration
			n, err := WriteRetrying(context.Background(), func(b []byte) error { return f.WriteFile("/x/online", b) }, "/x/online", []byte("0\n"), Retry{
				Retries: tc.retries, Backoff: 10 * time.Millisecond, Retryable: busy,
				Sleep: func(_ context.Context, d time.Duration) error { sleeps = append(sleeps, d); return nil },
			})
			require.Equal(t, tc.wantWrites, n)
			require.Equal(t, tc.wantSleeps, sleeps)
			if tc.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.wantErr)
			require.ErrorContains(t, err, `writing "0\n" to /x/online`)
		})
	}
}

func TestNextDelayCaps(t *testing.T) {
	require.Equal(t, 2*time.Second, NextDelay(time.Second))
	require.Equal(t, time.Minute, NextDelay(45*time.Second))
}
