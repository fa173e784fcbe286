package replay

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// benchRecords builds n records over 100 hosts in time order: mostly
// corrected memory errors on a few hot pages per host and a long tail of
// single errors, some cache errors and rare UEs, like a generated trace.
func benchRecords(n int) []Record {
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]Record, n)
	for i := range recs {
		host := fmt.Sprintf("h%03d", i%100)
		ev := fault.NewEvent(fault.SourceTraceMCE, t0.Add(time.Duration(i)*time.Second))
		ev.Class, ev.Severity = fault.ClassMemory, fault.SeverityCorrected
		switch r := rng.IntN(1000); {
		case r < 600: // hot pages
			ev.PhysAddr = uint64(rng.IntN(8)) * fault.PageSize
		case r < 990: // tail
			ev.PhysAddr = uint64(rng.IntN(1<<24)) * fault.PageSize
		case r < 998:
			ev.Class, ev.CPU, ev.Bank, ev.CacheLevel, ev.CoreBank = fault.ClassCache, 1+rng.IntN(63), 1, 1, true
		default:
			ev.Severity = fault.SeverityUncorrectedRecoverable
			ev.PhysAddr = uint64(rng.IntN(1<<24)) * fault.PageSize
		}
		if ev.Class == fault.ClassMemory {
			ev.AddrValid, ev.AddrLSB, ev.MC, ev.DIMMLabel = true, 6, 0, fmt.Sprintf("DIMM_%d", ev.PhysAddr>>32)
			ev.Source = fault.SourceTraceMC
		}
		recs[i] = Record{Line: i + 1, Host: host, Event: ev}
	}
	return recs
}

func benchReplay(b *testing.B, names ...string) {
	recs := benchRecords(1 << 20)
	var policies []Policy
	for _, n := range names {
		p, err := LoadPolicy(BuiltinPrefix + n)
		if err != nil {
			b.Fatal(err)
		}
		policies = append(policies, p...)
	}
	b.ResetTimer()
	var r *Replayer
	for i := 0; i < b.N; i++ {
		if i%len(recs) == 0 {
			b.StopTimer()
			r, _ = New(defaultHost, policies...)
			b.StartTimer()
		}
		if err := r.Add("bench", &recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkReplayDefault: events/s through our default policy, parsed
// records in memory (target: at least 1 M/s).
func BenchmarkReplayDefault(b *testing.B) { benchReplay(b, "selfprotect") }

// BenchmarkReplayAll: events/s with our policy and the five anchors fed
// every event.
func BenchmarkReplayAll(b *testing.B) { benchReplay(b, append([]string{"selfprotect"}, Anchors...)...) }

// BenchmarkParseLine: trace lines parsed per second.
func BenchmarkParseLine(b *testing.B) {
	line := []byte(`{"time":"2026-03-01T10:00:00.123456Z","host":"db-17","class":"memory","severity":"corrected","addr":"0x2d94040","cpu":3,"bank":7,"mc":0,"dimm":"CPU_SrcID#0_Ha#0_Chan#1_DIMM#0","count":1}`)
	var rec Record
	b.SetBytes(int64(len(line)))
	for i := 0; i < b.N; i++ {
		if err := ParseLine("bench", 1, line, &rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
