package edac

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

var pollTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return pollTime }

func newTestPoller(t *testing.T, fixture string) (*Poller, string) {
	t.Helper()
	p, dir := copyFixture(t, fixture)
	return NewPoller(p, kpath.OS{}, quietLog(), fixedClock), dir
}

// mustBaseline runs the first poll and checks it emitted nothing.
func mustBaseline(t *testing.T, p *Poller) {
	t.Helper()
	evs, err := p.Poll()
	require.NoError(t, err)
	require.Empty(t, evs, "the first poll only records history")
}

func TestPollerBaseline(t *testing.T) {
	p, _ := newTestPoller(t, "skx")
	mustBaseline(t, p)
	b := p.Baseline()
	require.Equal(t, uint64(5), b["mc0/dimm0/ce"])
	require.Equal(t, uint64(2), b["mc0/dimm2/ce"])
	require.Equal(t, uint64(1), b["mc1/dimm0/ce"])
	require.Equal(t, uint64(1), b["mc1/noinfo/ue"])
	require.Contains(t, b, "mc0/noinfo/ce")
	require.Len(t, b, 2*(3+1+2+1), "ce and ue for each DIMM and noinfo bucket")
	require.Equal(t, PollerStats{Polls: 1}, p.Stats())

	// Nothing changed: nothing to say.
	evs, err := p.Poll()
	require.NoError(t, err)
	require.Empty(t, evs)
}

func TestPollerDeltas(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		writes  map[string]string
		want    []fault.Event
	}{
		{
			name: "corrected on one dimm", fixture: "skx",
			writes: map[string]string{"mc0/dimm2/dimm_ce_count": "9", "mc0/ce_count": "14"},
			want: []fault.Event{{
				Severity: fault.SeverityCorrected, Count: 7, MC: 0,
				DIMMLabel: "CPU_SrcID#0_MC#0_Chan#1_DIMM#0", Layers: [3]int{1, 0, U},
			}},
		},
		{
			name: "uncorrected", fixture: "skx",
			writes: map[string]string{"mc1/dimm2/dimm_ue_count": "1"},
			want: []fault.Event{{
				Severity: fault.SeverityUncorrectedRecoverable, Count: 1, MC: 1,
				DIMMLabel: "CPU_SrcID#0_MC#1_Chan#1_DIMM#0", Layers: [3]int{1, 0, U},
			}},
		},
		{
			name: "noinfo counters", fixture: "skx",
			writes: map[string]string{"mc1/ce_noinfo_count": "3", "mc1/ue_noinfo_count": "2"},
			want: []fault.Event{
				{Severity: fault.SeverityCorrected, Count: 3, MC: 1, Layers: [3]int{U, U, U}},
				{Severity: fault.SeverityUncorrectedRecoverable, Count: 1, MC: 1, Layers: [3]int{U, U, U}},
			},
		},
		{
			name: "ghes label with a space", fixture: "ghes",
			writes: map[string]string{"mc1/dimm3/dimm_ce_count": "2"},
			want: []fault.Event{{
				Severity: fault.SeverityCorrected, Count: 1, MC: 1, DIMMLabel: "N1 DIMM_L0", Layers: [3]int{3, U, U},
			}},
		},
		{
			name: "empty label falls back to the sysfs name", fixture: "amd64",
			writes: map[string]string{"mc0/rank2/dimm_ce_count": "4"},
			want: []fault.Event{{
				Severity: fault.SeverityCorrected, Count: 4, MC: 0, DIMMLabel: "mc0/rank2", Layers: [3]int{1, 0, U},
			}},
		},
		{
			name: "legacy csrow channels and rows", fixture: "csrow",
			writes: map[string]string{
				"mc0/csrow0/ch1_ce_count": "3", "mc0/csrow0/ue_count": "2",
				"mc0/csrow1/ch1_ce_count": "2",
			},
			want: []fault.Event{
				{Severity: fault.SeverityCorrected, Count: 2, MC: 0, DIMMLabel: "DIMM_B1", Layers: [3]int{0, 1, U}},
				{Severity: fault.SeverityUncorrectedRecoverable, Count: 1, MC: 0, DIMMLabel: "DIMM_A1 or DIMM_B1", Layers: [3]int{0, U, U}},
				{Severity: fault.SeverityCorrected, Count: 1, MC: 0, DIMMLabel: "mc0/csrow1/ch1", Layers: [3]int{1, 1, U}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, dir := newTestPoller(t, tt.fixture)
			mustBaseline(t, p)
			for rel, v := range tt.writes {
				writeAttr(t, dir, rel, v)
			}
			evs, err := p.Poll()
			require.NoError(t, err)
			require.Len(t, evs, len(tt.want))
			for i, w := range tt.want {
				got := evs[i]
				require.Equal(t, fault.SourceEDACPoll, got.Source)
				require.Equal(t, pollTime, got.Received)
				require.Equal(t, fault.ClassMemory, got.Class)
				require.Equal(t, w.Severity, got.Severity, "event %d", i)
				require.Equal(t, w.Count, got.Count, "event %d", i)
				require.Equal(t, w.MC, got.MC, "event %d", i)
				require.Equal(t, w.DIMMLabel, got.DIMMLabel, "event %d", i)
				require.Equal(t, w.Layers, got.Layers, "event %d", i)
				require.False(t, got.AddrValid, "counters carry no address")
				require.NotEmpty(t, got.Detail)
			}
			// The same values again give nothing: deltas are consumed.
			evs, err = p.Poll()
			require.NoError(t, err)
			require.Empty(t, evs)
		})
	}
}

func TestPollerResetByCounter(t *testing.T) {
	p, dir := newTestPoller(t, "skx")
	hook := test.NewLocal(p.log.(*logrus.Logger))
	mustBaseline(t, p)

	// reset_counters zeroes everything; a new error lands on dimm4 right after.
	for _, rel := range []string{"mc0/dimm0/dimm_ce_count", "mc0/dimm2/dimm_ce_count", "mc0/ce_count"} {
		writeAttr(t, dir, rel, "0")
	}
	writeAttr(t, dir, "mc0/dimm4/dimm_ce_count", "1")
	evs, err := p.Poll()
	require.NoError(t, err)
	require.Empty(t, evs, "a reset round is not trusted")
	require.Equal(t, uint64(1), p.Stats().Resets)
	require.Contains(t, lastWarning(hook), "reset")

	writeAttr(t, dir, "mc0/dimm0/dimm_ce_count", "2")
	evs, err = p.Poll()
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, uint32(2), evs[0].Count, "deltas restart from the value after the reset")
	require.Equal(t, "CPU_SrcID#0_MC#0_Chan#0_DIMM#0", evs[0].DIMMLabel)
}

func TestPollerResetBySecondsSinceReset(t *testing.T) {
	p, dir := newTestPoller(t, "skx")
	mustBaseline(t, p)
	// Counters reset and climbed past their old values within one interval:
	// only seconds_since_reset shows it.
	writeAttr(t, dir, "mc1/seconds_since_reset", "30")
	writeAttr(t, dir, "mc1/dimm0/dimm_ce_count", "6")
	evs, err := p.Poll()
	require.NoError(t, err)
	require.Empty(t, evs)
	require.Equal(t, uint64(1), p.Stats().Resets)

	writeAttr(t, dir, "mc1/seconds_since_reset", "90")
	writeAttr(t, dir, "mc1/dimm0/dimm_ce_count", "7")
	evs, err = p.Poll()
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, uint32(1), evs[0].Count)
}

func TestPollerUnreadableFile(t *testing.T) {
	paths, dir := copyFixture(t, "skx")
	fsys := &switchFS{}
	p := NewPoller(paths, fsys, quietLog(), fixedClock)
	mustBaseline(t, p)

	fsys.set(map[string]error{"mc0/dimm0/dimm_ue_count": syscall.EIO})
	writeAttr(t, dir, "mc0/dimm0/dimm_ce_count", "7")
	writeAttr(t, dir, "mc0/dimm2/dimm_ce_count", "3")
	evs, err := p.Poll()
	require.ErrorIs(t, err, syscall.EIO)
	require.Len(t, evs, 1, "the readable DIMM still reports")
	require.Equal(t, "CPU_SrcID#0_MC#0_Chan#1_DIMM#0", evs[0].DIMMLabel)
	require.Equal(t, uint64(1), p.Stats().ReadErrors)

	// Readable again: what happened meanwhile is counted, not lost.
	fsys.set(nil)
	evs, err = p.Poll()
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "CPU_SrcID#0_MC#0_Chan#0_DIMM#0", evs[0].DIMMLabel)
	require.Equal(t, uint32(2), evs[0].Count)
}

func TestPollerUnreadableNoInfo(t *testing.T) {
	paths, dir := copyFixture(t, "skx")
	fsys := &switchFS{}
	p := NewPoller(paths, fsys, quietLog(), fixedClock)
	mustBaseline(t, p)
	fsys.set(map[string]error{"mc1/ce_noinfo_count": syscall.EACCES})
	writeAttr(t, dir, "mc1/ue_noinfo_count", "4")
	evs, err := p.Poll()
	require.ErrorIs(t, err, syscall.EACCES)
	require.Empty(t, evs)
	fsys.set(nil)
	evs, err = p.Poll()
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, uint32(3), evs[0].Count)
}

func TestPollerControllersComeAndGo(t *testing.T) {
	p, dir := newTestPoller(t, "skx")
	hook := test.NewLocal(p.log.(*logrus.Logger))
	mc1 := filepath.Join(dir, "sys/devices/system/edac/mc/mc1")
	saved := t.TempDir()
	require.NoError(t, os.Rename(mc1, filepath.Join(saved, "mc1")))
	mustBaseline(t, p)
	require.NotContains(t, p.Baseline(), "mc1/dimm0/ce")

	// The driver binds mc1 later, with old counts: history, not new errors.
	require.NoError(t, os.Rename(filepath.Join(saved, "mc1"), mc1))
	evs, err := p.Poll()
	require.NoError(t, err)
	require.Empty(t, evs)
	require.Equal(t, uint64(1), p.Baseline()["mc1/dimm0/ce"])

	writeAttr(t, dir, "mc1/dimm0/dimm_ce_count", "2")
	evs, err = p.Poll()
	require.NoError(t, err)
	require.Len(t, evs, 1)

	// A DIMM vanishes (hot remove, driver quirk): forgotten and logged.
	require.NoError(t, os.RemoveAll(filepath.Join(mc1, "dimm2")))
	evs, err = p.Poll()
	require.NoError(t, err)
	require.Empty(t, evs)
	require.NotContains(t, p.Baseline(), "mc1/dimm2/ce")
	require.Contains(t, lastWarning(hook), "vanished")

	// The whole controller goes away, then everything.
	require.NoError(t, os.RemoveAll(mc1))
	_, err = p.Poll()
	require.NoError(t, err)
	require.NotContains(t, p.Baseline(), "mc1/dimm0/ce")
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "sys/devices/system/edac/mc/mc0")))
	_, err = p.Poll()
	require.ErrorIs(t, err, ErrNoEDAC)
	require.Empty(t, p.Baseline())
}

func TestPollerDIMMAppears(t *testing.T) {
	p, dir := newTestPoller(t, "skx")
	mustBaseline(t, p)
	src := filepath.Join(dir, "sys/devices/system/edac/mc/mc1/dimm2")
	dst := filepath.Join(dir, "sys/devices/system/edac/mc/mc1/dimm4")
	require.NoError(t, os.CopyFS(dst, os.DirFS(src)))
	writeAttr(t, dir, "mc1/dimm4/dimm_ce_count", "9")
	evs, err := p.Poll()
	require.NoError(t, err)
	require.Empty(t, evs, "a new DIMM's counts are its history")
	require.Equal(t, uint64(9), p.Baseline()["mc1/dimm4/ce"])
}

func TestPollerNoEDAC(t *testing.T) {
	p := NewPoller(kpath.Under(t.TempDir()), kpath.OS{}, quietLog(), fixedClock)
	evs, err := p.Poll()
	require.ErrorIs(t, err, ErrNoEDAC)
	require.Empty(t, evs)
}

func TestPollerRunLoop(t *testing.T) {
	p, dir := newTestPoller(t, "ghes")
	ticks := make(chan time.Time)
	out := make(chan fault.Event, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.runTicks(ctx, ticks, out) }()

	ticks <- pollTime // the baseline was taken before the loop waited for this tick
	writeAttr(t, dir, "mc0/dimm1/dimm_ce_count", "3")
	ticks <- pollTime
	select {
	case ev := <-out:
		require.Equal(t, "N0 DIMM_B0", ev.DIMMLabel)
		require.Equal(t, uint32(3), ev.Count)
	case <-time.After(5 * time.Second):
		t.Fatal("no event from the poll loop")
	}
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, uint64(3), p.Stats().Polls)
}

func TestSource(t *testing.T) {
	p, _ := newTestPoller(t, "skx")
	s := NewSource(p, time.Hour)
	require.Equal(t, "edac-poll", s.Name())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, s.Run(ctx, make(chan fault.Event)))
	require.Error(t, NewSource(p, 0).Run(context.Background(), nil))
}

// TestPollerConcurrentStats runs under -race: status reads the poller's
// stats and baseline from its own goroutine while the poll loop runs.
func TestPollerConcurrentStats(t *testing.T) {
	p, dir := newTestPoller(t, "skx")
	mustBaseline(t, p)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			_ = p.Stats()
			_ = p.Baseline()
		}
	}()
	var total uint32
	for i := range 20 {
		writeAttr(t, dir, "mc0/dimm0/dimm_ce_count", strconv.Itoa(5+50*(i+1)))
		evs, err := p.Poll()
		require.NoError(t, err)
		for _, ev := range evs {
			total += ev.Count
		}
	}
	wg.Wait()
	require.Equal(t, uint32(1000), total, "every counted error reported once")
}

// switchFS is failFS whose failures a test can change between polls.
type switchFS struct {
	mu sync.Mutex
	failFS
}

func (s *switchFS) set(fail map[string]error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = fail
}

func (s *switchFS) ReadFile(name string) ([]byte, error) {
	s.mu.Lock()
	f := s.failFS
	s.mu.Unlock()
	return f.ReadFile(name)
}

func (s *switchFS) ReadDir(name string) ([]os.DirEntry, error) {
	s.mu.Lock()
	f := s.failFS
	s.mu.Unlock()
	return f.ReadDir(name)
}

func lastWarning(h *test.Hook) string {
	for i := len(h.AllEntries()) - 1; i >= 0; i-- {
		e := h.AllEntries()[i]
		if e.Level == logrus.WarnLevel {
			return e.Message
		}
	}
	return ""
}
