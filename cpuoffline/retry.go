package cpuoffline

import (
	"context"
	"errors"
	"syscall"

	"github.com/selfprotect/selfprotect/kpath"
)

// retryable says whether another write can help: a CPU hotplug write gets
// EBUSY while another hotplug operation or a reader holds the lock, and
// EAGAIN when the kernel asks to try later. Anything else (EPERM, EIO,
// EINVAL) will fail the same way again.
func retryable(err error) bool {
	return errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EAGAIN)
}

// writeWithRetry writes data to path, retrying EBUSY and EAGAIN with a
// doubling backoff. It returns the number of writes made and the last error.
func (o *Offliner) writeWithRetry(ctx context.Context, path string, data []byte) (int, error) {
	write := func(b []byte) error { return o.fsys.WriteFile(path, b) }
	return kpath.WriteRetrying(ctx, write, path, data, kpath.Retry{
		Retries: o.opts.Retries, Backoff: o.opts.Backoff, Retryable: retryable, Sleep: o.opts.Sleep,
		OnRetry: func(err error, attempt int) {
			o.opts.Log.WithError(err).WithField("attempt", attempt).Warn("cpu online write failed, retrying")
		},
	})
}
