package daemon

import (
	"fmt"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/ebpfsource"
)

// ebpfSource is the eBPF reader with what it reports to status: the
// kernel side's counters, read from memory (the reader refreshes them at
// each sweep), so status costs no syscall.
type ebpfSource struct {
	*ebpfsource.Source
}

// The source table finds these by type assertion: a changed signature
// would silently drop them (it once did in a merge), so the compiler checks.
var (
	_ problemReporter = ebpfSource{}
	_ counterReporter = ebpfSource{}
	_ problemReporter = traceSource{}
	_ counterReporter = traceSource{}
)

func (e ebpfSource) addCounters(c *EventCounters) {
	t := e.Totals()
	c.EBPFSent += t.Sent
	c.EBPFAggregated += t.Aggregated
	c.EBPFRingbufFull += t.RingbufFull
	c.EBPFLost += t.Lost
}

// problems: a record counted in the kernel is not lost (its count reaches
// the engines); one that found both the ring buffer and its aggregation
// map full is, and leaves us partly blind (degraded, as tracefs overruns).
func (e ebpfSource) problems() []problem {
	if n := e.Totals().Lost; n > 0 {
		return []problem{{kind: alert.SourceDegraded,
			text: fmt.Sprintf("eBPF probes lost %d records (ring buffer and aggregation map both full)", n)}}
	}
	return nil
}
