package pageoffline

import (
	"context"
	"fmt"

	"github.com/selfprotect/selfprotect/kpath"
)

// writeWithRetry writes data to the offline file f, retrying only what
// classify calls retryable, with a doubling backoff. It returns the writes
// made and the last error.
func (o *Offliner) writeWithRetry(ctx context.Context, f *kpath.Kept, data []byte) (int, error) {
	return kpath.WriteRetrying(ctx, f.WriteFile, f.Name(), data, kpath.Retry{
		Retries: o.opts.Retries, Backoff: o.opts.Backoff, Sleep: o.opts.Sleep,
		Retryable: func(err error) bool { return classify(err).retry },
		OnRetry: func(err error, attempt int) {
			o.opts.Log.WithError(err).WithField("attempt", attempt).Warn("page offline write failed, retrying")
		},
	})
}

// verifyPoisoned re-reads kpageflags until HWPOISON shows or VerifyReads
// reads are spent. It returns the last flags read and the number of reads.
func (o *Offliner) verifyPoisoned(ctx context.Context, pfn uint64) (PageFlags, int, error) {
	delay := o.opts.VerifyBackoff
	var flags PageFlags
	for reads := 1; ; reads++ {
		var err error
		flags, err = o.pageFlags(pfn)
		if err != nil {
			return flags, reads, err
		}
		if flags.HWPoison() || reads >= o.opts.VerifyReads {
			return flags, reads, nil
		}
		if err := o.opts.Sleep(ctx, delay); err != nil {
			return flags, reads, fmt.Errorf("waiting to re-read kpageflags: %w", err)
		}
		delay = kpath.NextDelay(delay)
	}
}
