package daemon

import (
	"time"

	"github.com/selfprotect/selfprotect/ebpfsource"
)

// ebpfSource is the eBPF reader with what it reports to status: the
// kernel side's counters, read from memory (the reader refreshes them at
// each sweep), so status costs no syscall.
type ebpfSource struct {
	*ebpfsource.Source
	loss *recentLoss
	now  func() time.Time
}

// The source table finds these by type assertion: a changed signature
// would silently drop them (it once did in a merge), so the compiler checks.
var (
	_ problemReporter = ebpfSource{}
	_ counterReporter = ebpfSource{}
	_ problemReporter = traceSource{}
	_ counterReporter = traceSource{}
	_ holder          = ebpfSource{}
	_ salvager        = ebpfSource{}
	_ closer          = ebpfSource{}
)

func (e ebpfSource) addCounters(c *EventCounters) {
	t := e.Totals()
	c.EBPFSent += t.Sent
	c.EBPFAggregated += t.Aggregated
	c.EBPFRingbufFull += t.RingbufFull
	c.EBPFLost += t.Lost
}

func (e ebpfSource) problems() []problem {
	lost := e.Totals().Lost
	return ebpfProblems(lost, e.loss.recent(lost, e.now()))
}
