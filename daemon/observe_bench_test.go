package daemon

import (
	"testing"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// BenchmarkObserveDeciding measures the main loop's part of a deciding
// error (the guest's to_loop and diagnose stages, less the hops): two
// corrected errors on a fresh page go through count-once and the engine,
// and the second opens a case for the action worker. The worker's queue
// is emptied between pages. Past ~500 pages the engine's evidence log is
// full (1 024 events) and each case's evidence walk covers all of it, as
// on a daemon that has seen that many errors within the page window.
func BenchmarkObserveDeciding(b *testing.B) {
	d := quietDaemon(b)
	d.log.SetLevel(4) // info, as a production daemon logs
	storeQ := make(chan fault.Event, 4)
	base := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pfn := uint64(0x100000 + i)
		for k := 0; k < 2; k++ {
			d.observe(pageError(base, i, k, pfn), storeQ)
			<-storeQ
		}
		for {
			if _, ok := d.jobs.pop(); !ok {
				break
			}
		}
	}
}
