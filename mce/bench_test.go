package mce

import (
	"testing"
)

func reportRate(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "records/s")
	}
}

// BenchmarkDecode decodes a mix of the real injections and SMCA records.
func BenchmarkDecode(b *testing.B) {
	recs := []Record{
		amdRec(4, 0x9c0000000008011b, 0x2ba2040, 0x8c),
		intelRec(7, 0x9c00000000000090, 0x2a21040, 0x8c),
		intelRec(1, 0x9000000000000134, 0, 0),
		zenRec(15, 0x9c2040000000011b, 0xdeadb040, ipidUMC),
		zenRec(7, 0x900000000000010a, 0, ipidL3),
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = Decode(recs[i%len(recs)])
	}
	reportRate(b)
}

// BenchmarkFromTrace reads real 6.1 and 6.12 records through their format.
func BenchmarkFromTrace(b *testing.B) {
	recs := append(realRecords(b, "6.1-amd"), realRecords(b, "6.12-intel")...)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := FromTrace(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

// BenchmarkTraceDecoder is the whole per-record cost the tracefs source pays.
func BenchmarkTraceDecoder(b *testing.B) {
	recs := append(realRecords(b, "6.1-amd"), realRecords(b, "6.12-intel")...)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := TraceDecoder(recs[i%len(recs)], received); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}
