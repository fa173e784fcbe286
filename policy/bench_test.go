package policy

import (
	"runtime"
	"testing"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

const benchPages = 1 << 20

// BenchmarkObserveDistinctPages: the design.md §7 target, ≥ 2 M events/s
// on one core with 1 M distinct pages tracked and ≤ 128 MiB of state. The
// engine is filled with 1 M pages (one error each), then every measured
// event hits a new page, so each one inserts and evicts at the cap: the
// storm-over-many-pages case.
func BenchmarkObserveDistinctPages(b *testing.B) {
	cfg := Defaults()
	cfg.Engine.MaxTracked = benchPages
	ev := fault.NewEvent(fault.SourceTraceMCE, t0)
	ev.Class, ev.Severity, ev.AddrValid, ev.AddrLSB, ev.CPU = fault.ClassMemory, fault.SeverityCorrected, true, 6, 1

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e := NewEngine(cfg)
	for i := 0; i < benchPages; i++ {
		ev.PhysAddr = uint64(i) * fault.PageSize
		ev.Received = t0.Add(time.Duration(i) * time.Microsecond)
		e.Observe(&ev)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := e.Snapshot().Rules[0].Tracked; got != benchPages {
		b.Fatalf("tracked %d pages, want %d", got, benchPages)
	}
	bytesPerPage := float64(after.HeapAlloc-before.HeapAlloc) / benchPages

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		ev.PhysAddr = uint64(benchPages+i) * fault.PageSize
		ev.Received = t0.Add(time.Duration(benchPages+i) * time.Microsecond)
		e.Observe(&ev)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(bytesPerPage, "bytes/page")
	b.ReportMetric(bytesPerPage*benchPages/(1<<20), "MiB/1M-pages")
	runtime.KeepAlive(e)
}

// BenchmarkObserveHotPage: one page reporting again and again, as a
// failing cell does. "tripped": after its case opened (the usual state);
// "counting": a threshold so high it never trips, so every event updates
// the SERD slots.
func BenchmarkObserveHotPage(b *testing.B) {
	for _, bc := range []struct {
		name      string
		threshold int
	}{{"tripped", 2}, {"counting", 1 << 30}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := Defaults()
			cfg.Rules.Page.Threshold = bc.threshold
			e := NewEngine(cfg)
			ev := fault.NewEvent(fault.SourceTraceMCE, t0)
			ev.Class, ev.Severity, ev.AddrValid, ev.AddrLSB = fault.ClassMemory, fault.SeverityCorrected, true, 6
			ev.PhysAddr = 0x2d94 * fault.PageSize
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				ev.Received = t0.Add(time.Duration(i) * time.Microsecond)
				e.Observe(&ev)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
