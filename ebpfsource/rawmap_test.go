package ebpfsource

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// The raw walk sees every key of an aggregation map once, with the value
// cilium reads for it.
func TestRawMapWalksEveryKey(t *testing.T) {
	s := mapsOnly(t)
	m := s.aggMaps[kindMCERecord]
	last := toWire(t, s.formats[kindMCERecord], kindMCERecord, 1, firstRecord(t))
	want := map[probesSpKey]uint64{}
	for i := range uint64(300) {
		k := probesSpKey{Page: 0x1000 + i, Sig: i * 7, Cpu: uint32(i % 4), Bank: uint16(i % 9), Kind: kindMCERecord}
		require.NoError(t, m.Put(k, aggValue(t, m, i+1, 2*i+1, last)))
		want[k] = 2*i + 1
	}
	raw, err := s.rawMaps()
	require.NoError(t, err)
	got := map[probesSpKey]uint64{}
	require.NoError(t, raw.agg[kindMCERecord].each(func(k, v []byte) bool {
		key := decodeKey(k)
		_, seen := got[key]
		require.False(t, seen, "key %+v walked twice", key)
		got[key] = binary.LittleEndian.Uint64(v[16:])
		return true
	}))
	require.Equal(t, want, got)

	stop := 0
	require.NoError(t, raw.agg[kindMCERecord].each(func(k, v []byte) bool { stop++; return stop < 3 }))
	require.Equal(t, 3, stop, "fn returning false ends the walk")
}

// The raw counter read sums every CPU's slot, as Stats does.
func TestReadCountersSumsCPUs(t *testing.T) {
	s := mapsOnly(t)
	n, err := ebpf.PossibleCPU()
	require.NoError(t, err)
	perCPU := make([]probesSpStats, n)
	for i := range perCPU {
		perCPU[i] = probesSpStats{Seen: 10, Sent: 6, Aggregated: uint64(i + 1), RingbufFull: 2, Lost: 1}
	}
	require.NoError(t, s.stats.Put(uint32(kindMCEvent), perCPU))
	agg, err := s.readCounters()
	require.NoError(t, err)
	k := uint64(n)
	require.Equal(t, k*(k+1)/2, agg[kindMCEvent])
	require.Zero(t, agg[kindMCERecord])
	require.Equal(t, Totals{Sent: 6 * k, Aggregated: k * (k + 1) / 2, RingbufFull: 2 * k, Lost: k}, s.Totals())
}

// A sweep that finds nothing new allocates nothing: the storm's sweep
// each second should cost the garbage collector only the events it sends.
func TestSweepWithNothingNewAllocatesNothing(t *testing.T) {
	s := mapsOnly(t)
	last := toWire(t, s.formats[kindMCERecord], kindMCERecord, 1, firstRecord(t))
	m := s.aggMaps[kindMCERecord]
	for i := range uint64(4) {
		require.NoError(t, m.Put(probesSpKey{Page: i, Kind: kindMCERecord}, aggValue(t, m, 9, 9, last)))
	}
	putAggregated(t, s, kindMCERecord, 36)
	out := make(chan fault.Event, 8)
	require.True(t, s.sweep(t.Context(), out, true))
	require.Len(t, out, 4)
	for _, full := range []bool{false, true} {
		allocs := testing.AllocsPerRun(20, func() {
			require.False(t, s.sweep(t.Context(), out, full))
		})
		require.Zero(t, allocs, "full=%v", full)
	}
}

// SweepNow makes a waiting Run read the counters at once, however far its
// own next sweep is; asked again while Run works, the request is not lost.
func TestSweepNowWakesRun(t *testing.T) {
	s := runnable(t, time.Hour)
	s.cfg.Sweep = time.Hour
	last := toWire(t, s.formats[kindMCERecord], kindMCERecord, 1, firstRecord(t))
	m := s.aggMaps[kindMCERecord]
	out := make(chan fault.Event, 4)
	done := make(chan error, 1)
	go func() { done <- s.Run(t.Context(), out) }()
	for i, total := range []uint64{3, 10, 11} {
		require.NoError(t, m.Put(probesSpKey{Page: 5, Kind: kindMCERecord}, aggValue(t, m, total, total, last)))
		putAggregated(t, s, kindMCERecord, total)
		s.SweepNow()
		select {
		case ev := <-out:
			require.EqualValues(t, total-[]uint64{0, 3, 10}[i], ev.Count, "sweep %d", i)
		case <-time.After(time.Minute):
			t.Fatalf("sweep %d: no event after SweepNow", i)
		}
	}
	require.NoError(t, s.Close())
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("Run still blocked after Close")
	}
}
