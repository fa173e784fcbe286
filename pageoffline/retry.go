package pageoffline

import (
	"context"
	"fmt"
)

// writeWithRetry writes data to path, retrying only what classify calls
// retryable, with a doubling backoff. It returns the writes made and the
// last error.
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
		if !classify(err).retry || attempts > o.opts.Retries {
			return attempts, err
		}
		o.opts.Log.WithError(err).WithField("attempt", attempts).Warn("page offline write failed, retrying")
		if serr := o.opts.Sleep(ctx, delay); serr != nil {
			return attempts, fmt.Errorf("%w (gave up waiting to retry: %v)", err, serr)
		}
		delay = nextDelay(delay)
	}
}

// verifyPoisoned re-reads kpageflags until HWPOISON shows or VerifyReads
// reads are spent. It returns the last flags read and the number of reads.
func (o *Offliner) verifyPoisoned(ctx context.Context, pfn uint64) (PageFlags, int, error) {
	delay := o.opts.VerifyBackoff
	var flags PageFlags
	for reads := 1; ; reads++ {
		var err error
		flags, err = ReadPageFlags(o.paths, o.fsys, pfn)
		if err != nil {
			return flags, reads, err
		}
		if flags.HWPoison() || reads >= o.opts.VerifyReads {
			return flags, reads, nil
		}
		if err := o.opts.Sleep(ctx, delay); err != nil {
			return flags, reads, fmt.Errorf("waiting to re-read kpageflags: %w", err)
		}
		delay = nextDelay(delay)
	}
}
