package ebpfsource

import (
	"context"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func holdValue(t *testing.T, s *Source) uint32 {
	t.Helper()
	var v uint32
	require.NoError(t, s.coll.Maps[probesMapHold].Lookup(uint32(0), &v))
	return v
}

// The hold is one word the probes read; release reports how many records
// found the ring buffer full meanwhile (counted in the kernel, so not
// matchable one for one).
func TestHoldAndReleaseAggregation(t *testing.T) {
	s := mapsOnly(t)
	require.Zero(t, holdValue(t, s), "a fresh object aggregates")
	cpus, err := ebpf.PossibleCPU()
	require.NoError(t, err)
	full := func(n uint64) {
		perCPU := make([]probesSpStats, cpus)
		perCPU[0] = probesSpStats{Seen: n, Aggregated: n, RingbufFull: n}
		require.NoError(t, s.stats.Put(uint32(kindMCERecord), perCPU))
	}
	full(3) // before the hold: not the hold's
	require.NoError(t, s.HoldAggregation())
	require.EqualValues(t, 1, holdValue(t, s))
	full(10)
	n, err := s.ReleaseAggregation()
	require.NoError(t, err)
	require.Zero(t, holdValue(t, s))
	require.EqualValues(t, 7, n, "ring-full records while held")

	require.NoError(t, s.HoldAggregation())
	n, err = s.ReleaseAggregation()
	require.NoError(t, err)
	require.Zero(t, n)
}

// Salvage, after Run failed, reports what the maps counted and Run never
// swept, and returns without waiting for a wake-up.
func TestSalvageReportsWhatRunLeft(t *testing.T) {
	s := runnable(t, 0)
	last := toWire(t, s.formats[kindMCERecord], kindMCERecord, 1, firstRecord(t))
	m := s.aggMaps[kindMCERecord]
	require.NoError(t, m.Put(probesSpKey{Page: 3, Kind: kindMCERecord}, aggValue(t, m, 6, 6, last)))
	s.reported[probesSpKey{Page: 3, Kind: kindMCERecord}] = 2 // Run's last sweep saw 2

	out := make(chan fault.Event, 4)
	n, err := s.Salvage(context.Background(), out)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Len(t, out, 1)
	ev := <-out
	require.EqualValues(t, 4, ev.Count, "only what Run did not report")
	require.Equal(t, fault.SourceEBPF, ev.Source)
}
