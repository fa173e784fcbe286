package cpuoffline

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// retryable says whether another write can help: a CPU hotplug write gets
// EBUSY while another hotplug operation or a reader holds the lock, and
// EAGAIN when the kernel asks to try later. Anything else (EPERM, EIO,
// EINVAL) will fail the same way again.
func retryable(err error) bool {
	return errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EAGAIN)
}

// writeWithRetry writes data to path, retrying retryable errors with a
// doubling backoff. It returns the number of writes made and the last error.
func (o *Offliner) writeWithRetry(ctx context.Context, path string, data []byte) (int, error) {
	delay := o.opts.Backoff
	attempts := 0
	for {
		if err := ctx.Err(); err != nil {
			return attempts, fmt.Errorf("before writing %s: %w", path, err)
		}
		attempts++
		err := o.fsys.WriteFile(path, data)
		if err == nil {
			return attempts, nil
		}
		err = fmt.Errorf("writing %q to %s: %w", data, path, err)
		if !retryable(err) || attempts > o.opts.Retries {
			return attempts, err
		}
		o.opts.Log.WithError(err).WithField("attempt", attempts).Warn("cpu online write failed, retrying")
		if serr := o.opts.Sleep(ctx, delay); serr != nil {
			return attempts, fmt.Errorf("%w (gave up waiting to retry: %v)", err, serr)
		}
		delay = nextDelay(delay)
	}
}

// nextDelay doubles d, capped so a large retry count cannot overflow.
func nextDelay(d time.Duration) time.Duration {
	const ceiling = time.Minute
	if d >= ceiling/2 {
		return ceiling
	}
	return 2 * d
}
