package ebpfsource

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/mce"
	"github.com/selfprotect/selfprotect/tracefs"
)

// These tests need root and a kernel with BPF: they skip elsewhere. The
// MCE paths themselves run in the QEMU guests (test/kernel, TestEBPF).

func requireBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create BPF maps and load programs")
	}
	if err := probeKernel(); err != nil {
		t.Skipf("kernel without what the probes need: %v", err)
	}
}

// Every probe whose tracepoint type this kernel's BTF has must pass the
// verifier (on a host without MCE support that is only mc_event; the
// guests load all five on 6.1 and 6.12).
func TestProbesPassTheVerifier(t *testing.T) {
	requireBPF(t)
	kernel, err := btf.LoadKernelSpec()
	require.NoError(t, err)
	for _, p := range probes {
		t.Run(p.Key(), func(t *testing.T) {
			var st *btf.Struct
			if err := kernel.TypeByName("trace_event_raw_"+p.name, &st); err != nil {
				t.Skipf("this kernel has no %s", p.Key())
			}
			spec, err := loadProbes()
			require.NoError(t, err)
			for name := range spec.Programs {
				if name != p.program {
					delete(spec.Programs, name)
				}
			}
			coll, err := ebpf.NewCollection(spec)
			require.NoError(t, err)
			coll.Close()
		})
	}
}

// mapsOnly loads the object's maps (no programs) behind a Source.
func mapsOnly(t *testing.T) *Source {
	t.Helper()
	requireBPF(t)
	spec, err := loadProbes()
	require.NoError(t, err)
	formats, err := wireFormats(spec.Types)
	require.NoError(t, err)
	spec.Programs = map[string]*ebpf.ProgramSpec{}
	coll, err := ebpf.NewCollection(spec)
	require.NoError(t, err)
	s := newSource(Config{Decoders: testDecoders}.withDefaults(), coll, formats)
	for _, p := range probes {
		s.adopt(p)
	}
	t.Cleanup(func() { coll.Close() })
	return s
}

func aggValue(t *testing.T, m *ebpf.Map, records, errors uint64, last []byte) []byte {
	t.Helper()
	v := make([]byte, m.ValueSize())
	binary.LittleEndian.PutUint64(v[8:], records)
	binary.LittleEndian.PutUint64(v[16:], errors)
	copy(v[aggHeadSize:], last)
	return v
}

// The sweep turns kernel-side counts into events carrying the growth since
// the last sweep, built from the key's last record, and reports nothing
// when nothing grew.
func TestSweepReportsCountedRecords(t *testing.T) {
	s := mapsOnly(t)
	rec := firstRecord(t)
	want, err := mce.TraceDecoder(rec, received)
	require.NoError(t, err)
	last := toWire(t, s.formats[kindMCERecord], kindMCERecord, 1, rec)

	m := s.aggMaps[kindMCERecord]
	key := probesSpKey{Page: 0x2799, Sig: 1, Cpu: 1, Bank: 7, Kind: kindMCERecord}
	out := make(chan fault.Event, 8)
	steps := []struct {
		records, errors uint64
		want            []uint32 // counts of the events the sweep sends
	}{
		{100, 100, []uint32{100}},
		{130, 130, []uint32{30}},
		{130, 130, nil},
	}
	for i, st := range steps {
		require.NoError(t, m.Put(key, aggValue(t, m, st.records, st.errors, last)))
		grew := s.sweep(t.Context(), out, true)
		require.Equal(t, st.want != nil, grew, "step %d", i)
		var counts []uint32
		for len(out) > 0 {
			ev := <-out
			counts = append(counts, ev.Count)
			w := want[0]
			w.Source, w.Count, w.Received = fault.SourceEBPF, ev.Count, ev.Received
			require.Equal(t, w, ev, "an aggregate is the last record's event with a count")
		}
		require.Equal(t, st.want, counts, "step %d", i)
	}
	require.EqualValues(t, 2, s.counts.aggregateEvents.Load())
}

// Stats sums the per-CPU counters of each attached probe.
func TestStatsSumsCPUs(t *testing.T) {
	s := mapsOnly(t)
	n, err := ebpf.PossibleCPU()
	require.NoError(t, err)
	perCPU := make([]probesSpStats, n)
	for i := range perCPU {
		perCPU[i] = probesSpStats{Seen: 10, Sent: 6, Aggregated: 3, RingbufFull: 2, Lost: 1}
	}
	require.NoError(t, s.stats.Put(uint32(kindMCERecord), perCPU))
	st, err := s.Stats()
	require.NoError(t, err)
	k := uint64(n)
	require.Equal(t, ProbeStats{Seen: 10 * k, Sent: 6 * k, Aggregated: 3 * k, RingbufFull: 2 * k, Lost: k}, st.Probes["mce/mce_record"])
	require.Equal(t, ProbeStats{}, st.Probes["ras/mc_event"])
}

// runnable is mapsOnly plus a ring-buffer reader, so Run works on a host
// without the tracepoints (nothing writes to the ring; the aggregation
// maps are filled from userspace).
func runnable(t *testing.T, backstop time.Duration) *Source {
	t.Helper()
	s := mapsOnly(t)
	s.cfg.Backstop = backstop
	rd, err := ringbuf.NewReader(s.coll.Maps[probesMapEvents])
	require.NoError(t, err)
	s.reader = rd
	t.Cleanup(func() { rd.Close() })
	s.ring, s.ringConn, err = pollable(s.coll.Maps[probesMapEvents].FD())
	require.NoError(t, err)
	t.Cleanup(func() { s.ring.Close() })
	return s
}

// With no wake-up at all, Run still reads the counters at the backstop and
// sends what the kernel counted; when ctx ends it returns nil.
func TestRunSweepsAtTheBackstopAndStopsWithItsContext(t *testing.T) {
	s := runnable(t, 20*time.Millisecond)
	last := toWire(t, s.formats[kindMCERecord], kindMCERecord, 1, firstRecord(t))
	m := s.aggMaps[kindMCERecord]
	require.NoError(t, m.Put(probesSpKey{Page: 1, Kind: kindMCERecord}, aggValue(t, m, 7, 7, last)))
	putAggregated(t, s, kindMCERecord, 7)

	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan fault.Event, 4)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	select {
	case ev := <-out:
		require.EqualValues(t, 7, ev.Count)
		require.Equal(t, fault.SourceEBPF, ev.Source)
	case <-time.After(time.Minute):
		t.Fatal("no aggregate event from the backstop sweep")
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after its context ended")
	}
}

// putAggregated sets a probe's aggregated counter as the probe would after
// counting n records (all on CPU 0).
func putAggregated(t *testing.T, s *Source, kind uint32, n uint64) {
	t.Helper()
	cpus, err := ebpf.PossibleCPU()
	require.NoError(t, err)
	perCPU := make([]probesSpStats, cpus)
	perCPU[0] = probesSpStats{Seen: n, Aggregated: n}
	require.NoError(t, s.stats.Put(kind, perCPU))
}

// A periodic sweep walks only the maps whose probe counted something since
// the last sweep; the last one (full) walks them all.
func TestSweepWalksOnlyWhatTheProbesCounted(t *testing.T) {
	s := mapsOnly(t)
	last := toWire(t, s.formats[kindMCERecord], kindMCERecord, 1, firstRecord(t))
	m := s.aggMaps[kindMCERecord]
	key := probesSpKey{Page: 2, Kind: kindMCERecord}
	out := make(chan fault.Event, 8)
	counts := func() []uint32 {
		var c []uint32
		for len(out) > 0 {
			c = append(c, (<-out).Count)
		}
		return c
	}

	putAggregated(t, s, kindMCERecord, 5)
	require.NoError(t, m.Put(key, aggValue(t, m, 5, 5, last)))
	require.True(t, s.sweep(t.Context(), out, false))
	require.Equal(t, []uint32{5}, counts(), "the counter grew: the map is walked")
	require.EqualValues(t, 5, s.Totals().Aggregated, "the sweep keeps the counters for status")

	// The map grew but its probe's counter did not (only a test can do
	// that: the probe bumps both): a periodic sweep does not look.
	require.NoError(t, m.Put(key, aggValue(t, m, 8, 8, last)))
	require.False(t, s.sweep(t.Context(), out, false))
	require.Empty(t, counts())

	require.True(t, s.sweep(t.Context(), out, true))
	require.Equal(t, []uint32{3}, counts(), "a full sweep walks every map")
}

// Close interrupts a Run blocked on the ring buffer.
func TestCloseInterruptsRun(t *testing.T) {
	s := runnable(t, time.Hour)
	done := make(chan error, 1)
	go func() { done <- s.Run(t.Context(), make(chan fault.Event)) }()
	require.NoError(t, s.Close())
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("Run still blocked after Close")
	}
}

func firstRecord(t *testing.T) *tracefs.Record {
	t.Helper()
	path := filepath.Join("testdata", "6.12-intel", "mce_record.format")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	kf, err := tracefs.ParseFormat(path, "mce", data)
	require.NoError(t, err)
	page, err := os.ReadFile(filepath.Join("testdata", "6.12-intel", "cpu1.bin"))
	require.NoError(t, err)
	res, err := tracefs.ParsePage(page, 1, tracefs.NewFormats(kf))
	require.NoError(t, err)
	require.NotEmpty(t, res.Records)
	return &res.Records[0]
}
