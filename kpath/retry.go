package kpath

import (
	"context"
	"fmt"
	"time"
)

// Retry says how to repeat a sysfs write that may fail transiently
// (EBUSY while another CPU hotplug runs, EAGAIN from soft offline).
type Retry struct {
	// Retries is how many writes follow the first one at most.
	Retries int
	// Backoff is the first wait; it doubles, capped at a minute.
	Backoff time.Duration
	// Retryable says whether another write can help; errors it rejects
	// are returned at once.
	Retryable func(error) bool
	// Sleep waits between writes (tests inject a fake); nil = SleepContext.
	Sleep func(context.Context, time.Duration) error
	// OnRetry is told about each failed write that will be retried.
	OnRetry func(err error, attempt int)
}

// WriteRetrying writes data to path with write (an FS's WriteFile, or a
// Kept's), retrying what r allows. It returns the number of writes made
// and the last error, which names the value and the path.
func WriteRetrying(ctx context.Context, write func([]byte) error, path string, data []byte, r Retry) (int, error) {
	sleep := r.Sleep
	if sleep == nil {
		sleep = SleepContext
	}
	delay := r.Backoff
	attempts := 0
	for {
		if err := ctx.Err(); err != nil {
			return attempts, fmt.Errorf("before writing %s: %w", path, err)
		}
		attempts++
		err := write(data)
		if err == nil {
			return attempts, nil
		}
		err = fmt.Errorf("writing %q to %s: %w", data, path, err)
		if r.Retryable == nil || !r.Retryable(err) || attempts > r.Retries {
			return attempts, err
		}
		if r.OnRetry != nil {
			r.OnRetry(err, attempts)
		}
		if serr := sleep(ctx, delay); serr != nil {
			return attempts, fmt.Errorf("%w (gave up waiting to retry: %v)", err, serr)
		}
		delay = NextDelay(delay)
	}
}

// NextDelay doubles d, capped so a large retry count cannot overflow.
func NextDelay(d time.Duration) time.Duration {
	const ceiling = time.Minute
	if d >= ceiling/2 {
		return ceiling
	}
	return 2 * d
}

// SleepContext waits d, returning early with ctx's error when ctx ends.
func SleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
