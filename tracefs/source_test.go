package tracefs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// testDecoder is the smallest mce_record decoder: enough to prove dispatch.
func testDecoder(rec *Record, received time.Time) ([]fault.Event, error) {
	ev := fault.NewEvent(fault.SourceTraceMCE, received)
	for name, dst := range map[string]*uint64{"status": &ev.Status, "addr": &ev.Addr} {
		v, err := rec.Uint(name)
		if err != nil {
			return nil, err
		}
		*dst = v
	}
	cpu, err := rec.Uint("cpu")
	if err != nil {
		return nil, err
	}
	bank, err := rec.Uint("bank")
	if err != nil {
		return nil, err
	}
	ev.CPU, ev.Bank = int(cpu), int(bank)
	return []fault.Event{ev}, nil
}

type runningSource struct {
	src    *Source
	out    chan fault.Event
	cancel context.CancelFunc
	done   chan error
}

func startSource(t *testing.T, inst *Instance, decoders map[string]Decoder, log logrus.FieldLogger, now func() time.Time) *runningSource {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningSource{src: NewSource(inst, decoders, log, now), out: make(chan fault.Event, 64), cancel: cancel, done: make(chan error, 1)}
	go func() { rs.done <- rs.src.Run(ctx, rs.out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rs.done:
		case <-time.After(10 * time.Second):
			t.Error("source did not stop")
		}
	})
	return rs
}

// next returns the next event, failing the test if none comes in a long
// bound (a hang, not a timing assertion).
func (rs *runningSource) next(t *testing.T) fault.Event {
	t.Helper()
	select {
	case ev := <-rs.out:
		return ev
	case err := <-rs.done:
		t.Fatalf("source stopped early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return fault.Event{}
}

// stop cancels and returns Run's result.
func (rs *runningSource) stop(t *testing.T) error {
	t.Helper()
	rs.cancel()
	select {
	case err := <-rs.done:
		rs.done <- err // for Cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("source did not stop after cancel")
	}
	return nil
}

// feed writes data to a CPU's FIFO in pieces, as a simulator may. Like the
// simulator it keeps its end open: a FIFO's contents vanish when the last
// descriptor closes, and the source may not have opened it yet.
func feed(t *testing.T, inst *Instance, cpu int, chunks ...[]byte) {
	t.Helper()
	f, err := os.OpenFile(inst.PipePath(cpu), os.O_RDWR, 0)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	for _, c := range chunks {
		_, err := f.Write(c)
		require.NoError(t, err)
	}
}

func fixedClock(t0 time.Time) func() time.Time { return func() time.Time { return t0 } }

func TestSourceDecodesRealPagesFromFIFOs(t *testing.T) {
	for _, cell := range captureCells {
		t.Run(cell, func(t *testing.T) {
			ft := newFixtureTree(t, kernelOf(cell))
			ft.fifo = true
			inst := ft.open(t, Options{})
			t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			rs := startSource(t, inst, map[string]Decoder{"mce/mce_record": testDecoder}, quietLogger(), fixedClock(t0))

			p1 := readPage(t, cell, "cpu1.bin")
			feed(t, inst, 1, p1[:1000], p1[1000:3000], p1[3000:])
			var got []fault.Event
			for range 3 {
				got = append(got, rs.next(t))
			}
			feed(t, inst, 2, readPage(t, cell, "cpu2.bin"))
			for range 5 {
				got = append(got, rs.next(t))
			}
			// A record of an enabled event without decoder is counted.
			feed(t, inst, 3, readPage(t, cell, "hardoffline-cpu3.bin"))
			require.Eventually(t, func() bool { return rs.src.Stats().NoDecoder == 1 }, 10*time.Second, time.Millisecond)
			require.NoError(t, rs.stop(t))

			memBank := map[string]int{"amd": 4, "intel": 7}[cell[len(kernelOf(cell))+1:]]
			for i, ev := range got {
				require.Equal(t, t0, ev.Received)
				if i < 3 {
					require.Equal(t, 1, ev.CPU)
					require.Equal(t, memBank, ev.Bank)
					require.NotZero(t, ev.Addr)
				} else {
					require.Equal(t, 2, ev.CPU)
					require.Equal(t, 1, ev.Bank)
					require.Equal(t, uint64(0x9000000000000134), ev.Status)
				}
			}
			require.Equal(t, got[0].Addr, got[1].Addr, "first two memory errors hit page A")
			require.NotEqual(t, got[0].Addr, got[2].Addr)
			require.Equal(t, SourceStats{Pages: 3, Records: 9, Decoded: 8, Events: 8, NoDecoder: 1}, rs.src.Stats())
		})
	}
}

func TestSourceSurvivesGarbageAndDecoderErrors(t *testing.T) {
	ft := newFixtureTree(t, "6.12")
	ft.fifo = true
	inst := ft.open(t, Options{})
	logger, hook := test.NewNullLogger()
	calls := 0
	flaky := func(rec *Record, received time.Time) ([]fault.Event, error) {
		calls++
		switch calls {
		case 1, 2:
			return nil, errors.New("bank out of range")
		case 3:
			panic("decoder bug")
		}
		return testDecoder(rec, received)
	}
	rs := startSource(t, inst, map[string]Decoder{"mce/mce_record": flaky}, logger, fixedClock(time.Unix(100, 0)))

	garbage := bytes.Repeat([]byte{0xff}, PageSize)
	feed(t, inst, 2, garbage, readPage(t, "6.12-amd", "cpu2.bin"))
	for range 2 { // records 4 and 5 decode
		ev := rs.next(t)
		require.Equal(t, 2, ev.CPU)
	}
	require.NoError(t, rs.stop(t))
	st := rs.src.Stats()
	require.Equal(t, uint64(2), st.Pages)
	require.Equal(t, uint64(1), st.CorruptPages)
	require.Equal(t, uint64(3), st.Undecodable)
	require.Equal(t, uint64(2), st.Decoded)

	var corrupt, undecodable int
	for _, e := range hook.AllEntries() {
		require.Equal(t, logrus.WarnLevel, e.Level)
		switch e.Message {
		case "skipping the damaged part of a ring-buffer page":
			corrupt++
			require.Contains(t, e.Data["error"], "commit word")
		case "cannot decode trace record":
			undecodable++
			require.Equal(t, "mce/mce_record", e.Data["event"])
			require.Contains(t, e.Data["error"], "bank out of range")
			require.NotEmpty(t, e.Data["record"])
		}
	}
	require.Equal(t, 1, corrupt)
	// Three failures within the same instant: one warning, the rest held back.
	require.Equal(t, 1, undecodable)
}

func TestWarnLimiter(t *testing.T) {
	l := newWarnLimiter(10 * time.Second)
	t0 := time.Unix(0, 0)
	steps := []struct {
		kind           string
		at             time.Duration
		wantOK         bool
		wantSuppressed int
	}{
		{"a", 0, true, 0},
		{"a", time.Second, false, 0},
		{"b", time.Second, true, 0},
		{"a", 5 * time.Second, false, 0},
		{"a", 10 * time.Second, true, 2},
		{"a", 11 * time.Second, false, 0},
		{"a", 30 * time.Second, true, 1},
	}
	for i, s := range steps {
		ok, n := l.allow(s.kind, t0.Add(s.at))
		require.Equal(t, s.wantOK, ok, "step %d", i)
		require.Equal(t, s.wantSuppressed, n, "step %d", i)
	}
}

func TestSourceCountsLostEvents(t *testing.T) {
	ft := newFixtureTree(t, "6.1")
	ft.fifo = true
	inst := ft.open(t, Options{})
	rs := startSource(t, inst, map[string]Decoder{"mce/mce_record": testDecoder}, quietLogger(), nil)
	page := readPage(t, "6.1-intel", "cpu1.bin")
	// Mark the real page as following 77 lost events, stored after the data.
	withLoss := append([]byte(nil), page...)
	size := int(withLoss[8]) | int(withLoss[9])<<8
	withLoss[11] |= 0xc0
	withLoss[PageHeaderSize+size] = 77
	feed(t, inst, 1, withLoss)
	for range 3 {
		rs.next(t)
	}
	require.NoError(t, rs.stop(t))
	require.Equal(t, uint64(77), rs.src.Stats().Missed)
}

func TestSourceStopsOnCancelWithNothingToRead(t *testing.T) {
	ft := newFixtureTree(t, "6.12")
	ft.fifo = true
	inst := ft.open(t, Options{})
	rs := startSource(t, inst, nil, quietLogger(), nil)
	require.NoError(t, rs.stop(t))
	require.Zero(t, rs.src.Stats().Pages)
	// With every reader gone, the instance can be removed.
	require.NoError(t, inst.Close())
	require.NoDirExists(t, inst.Dir())
}

// trace_pipe_raw returns 0 bytes when the kernel cannot hand out a page yet
// (seen under a CE storm on 6.1 and 6.12): that is not the end of the
// source. Here a regular file stands in: it runs dry inside the second
// page, the reader waits, and the rest of the page is read once it exists.
func TestSourceSurvivesZeroByteReads(t *testing.T) {
	ft := newFixtureTree(t, "6.12")
	inst := ft.open(t, Options{})
	page := readPage(t, "6.12-amd", "cpu1.bin")
	require.NoError(t, os.WriteFile(inst.PipePath(1), append(append([]byte{}, page...), page[:100]...), 0o644))
	src := NewSource(inst, map[string]Decoder{"mce/mce_record": testDecoder}, quietLogger(), nil)
	out := make(chan fault.Event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	require.Eventually(t, func() bool { return src.Stats().Pages == 1 }, 5*time.Second, 5*time.Millisecond)
	f, err := os.OpenFile(inst.PipePath(1), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.Write(page[100:])
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Eventually(t, func() bool { return src.Stats().Pages == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Len(t, out, 6, "3 records in each page")
	cancel()
	require.NoError(t, <-done)
}

func TestSourceMissingPipe(t *testing.T) {
	ft := newFixtureTree(t, "6.12")
	inst := ft.open(t, Options{})
	require.NoError(t, os.Remove(inst.PipePath(2)))
	err := NewSource(inst, nil, quietLogger(), nil).Run(context.Background(), make(chan fault.Event))
	require.ErrorIs(t, err, os.ErrNotExist)
}
