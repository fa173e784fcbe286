package policy

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Event builders. Each returns a fresh event at offset at from t0.

func memCE(at time.Duration, pfn uint64) *fault.Event {
	ev := fault.NewEvent(fault.SourceTraceMCE, t0.Add(at))
	ev.Class, ev.Severity = fault.ClassMemory, fault.SeverityCorrected
	ev.PhysAddr, ev.AddrValid, ev.AddrLSB = pfn*fault.PageSize+0x40, true, 6
	ev.CPU, ev.Socket = 1, 0
	return &ev
}

func edacCE(at time.Duration, label string, count uint32) *fault.Event {
	ev := fault.NewEvent(fault.SourceEDACPoll, t0.Add(at))
	ev.Class, ev.Severity = fault.ClassMemory, fault.SeverityCorrected
	ev.MC, ev.DIMMLabel, ev.Count = 0, label, count
	return &ev
}

func rowCE(at time.Duration, row string, pfn uint64) *fault.Event {
	ev := memCE(at, pfn)
	ev.Source, ev.MC, ev.DIMMLabel, ev.Row = fault.SourceTraceMC, 0, "DIMM_A1", row
	return ev
}

func cacheCE(at time.Duration, cpu, level int, coreBank bool) *fault.Event {
	ev := fault.NewEvent(fault.SourceTraceMCE, t0.Add(at))
	ev.Class, ev.Severity = fault.ClassCache, fault.SeverityCorrected
	ev.CPU, ev.Socket, ev.Bank, ev.CacheLevel, ev.CoreBank = cpu, 0, 1, level, coreBank
	return &ev
}

func memUE(at time.Duration, pfn uint64) *fault.Event {
	ev := memCE(at, pfn)
	ev.Severity = fault.SeverityUncorrectedRecoverable
	return ev
}

// step is one event (or a Tick when ev is nil) and what it must open.
type step struct {
	ev   *fault.Event
	tick time.Duration
	want []want
	// stormEnds: a Tick must report the storm's end.
	stormEnds bool
	reset     fault.Resource
}

type want struct {
	diag    fault.Diagnosis
	suspect fault.Resource
	targets []fault.Resource
	fru     string
}

func TestEngineScenarios(t *testing.T) {
	const day = 24 * time.Hour
	page := fault.Page(0x2d94)
	softOffline := want{fault.DiagSoftOfflinePage, page, []fault.Resource{page}, "memory on socket 0 at PFN 0x2d94"}
	noStorm := func(c *Config) { c.Rules.Storm.Enabled = false }

	tests := []struct {
		name   string
		config func(*Config)
		steps  []step
	}{
		{"two CEs on one page open one case", nil, []step{
			{ev: memCE(0, 0x2d94)},
			{ev: memCE(time.Hour, 0x2d94), want: []want{softOffline}},
		}},
		{"one CE opens nothing", nil, []step{
			{ev: memCE(0, 0x2d94)},
		}},
		{"CEs on different pages do not add up", nil, []step{
			{ev: memCE(0, 0x2d94)},
			{ev: memCE(time.Second, 0x2d95)},
		}},
		{"third error after the trip opens no second case", nil, []step{
			{ev: memCE(0, 0x2d94)},
			{ev: memCE(time.Minute, 0x2d94), want: []want{softOffline}},
			{ev: memCE(2*time.Minute, 0x2d94)},
			{ev: memCE(3*time.Minute, 0x2d94)},
		}},
		{"errors further apart than the window do not trip", nil, []step{
			{ev: memCE(0, 0x2d94)},
			{ev: memCE(day+time.Second, 0x2d94)},
			{ev: memCE(2*day+2*time.Second, 0x2d94)},
		}},
		{"an error exactly one window later has left it", nil, []step{
			{ev: memCE(0, 0x2d94)},
			{ev: memCE(day, 0x2d94)},
		}},
		{"an error just inside the window trips", nil, []step{
			{ev: memCE(0, 0x2d94)},
			{ev: memCE(day-time.Nanosecond, 0x2d94), want: []want{softOffline}},
		}},
		{"one record carrying two errors trips the page rule", nil, []step{
			{ev: func() *fault.Event { e := memCE(0, 0x2d94); e.Count = 2; return e }(), want: []want{softOffline}},
		}},
		{"deferred errors count like corrected ones", nil, []step{
			{ev: memCE(0, 0x2d94)},
			{ev: func() *fault.Event { e := memCE(time.Second, 0x2d94); e.Severity = fault.SeverityDeferred; return e }(),
				want: []want{softOffline}},
		}},
		{"an address coarser than a page does not count for the page rule", nil, []step{
			{ev: func() *fault.Event { e := memCE(0, 0x2d94); e.AddrLSB = 13; return e }()},
			{ev: func() *fault.Event { e := memCE(time.Second, 0x2d94); e.AddrLSB = 13; return e }()},
		}},
		{"an invalid address does not count for the page rule", nil, []step{
			{ev: func() *fault.Event { e := memCE(0, 0x2d94); e.AddrValid = false; return e }()},
			{ev: func() *fault.Event { e := memCE(time.Second, 0x2d94); e.AddrValid = false; return e }()},
		}},
		{"cache errors with an address never count toward the page rule", nil, []step{
			{ev: func() *fault.Event { e := memCE(0, 0x2d94); e.Class = fault.ClassCache; return e }()},
			{ev: func() *fault.Event { e := memCE(time.Second, 0x2d94); e.Class = fault.ClassTLB; return e }()},
		}},
		{"a disabled page rule never trips", func(c *Config) { c.Rules.Page.Enabled = false }, []step{
			{ev: memCE(0, 0x2d94)},
			{ev: memCE(time.Second, 0x2d94)},
		}},
		{"Count=1000 in one EDAC event trips the DIMM rule", nil, []step{
			{ev: edacCE(0, "CPU_SrcID#0_Ha#0_Chan#0_DIMM#0", 999)},
			{ev: edacCE(time.Hour, "CPU_SrcID#0_Ha#0_Chan#0_DIMM#1", 1000), want: []want{{
				fault.DiagReplaceDIMM, fault.DIMM(0, "CPU_SrcID#0_Ha#0_Chan#0_DIMM#1"), nil, "CPU_SrcID#0_Ha#0_Chan#0_DIMM#1"}}},
			{ev: edacCE(2*time.Hour, "CPU_SrcID#0_Ha#0_Chan#0_DIMM#1", 1000)},
		}},
		{"DIMM errors add up across records", nil, []step{
			{ev: edacCE(0, "A1", 600)},
			{ev: edacCE(time.Hour, "A1", 399)},
			{ev: edacCE(2*time.Hour, "A1", 1), want: []want{{fault.DiagReplaceDIMM, fault.DIMM(0, "A1"), nil, "A1"}}},
		}},
		{"DIMM errors outside the window fall out", func(c *Config) { c.Rules.DIMM.Window = day }, []step{
			{ev: edacCE(0, "A1", 999)},
			{ev: edacCE(day, "A1", 999)},
		}},
		{"distinct pages on a DIMM trip it", func(c *Config) { c.Rules.DIMM.DistinctPages = 3; c.Rules.Row.Enabled = false }, []step{
			{ev: rowCE(0, "", 0x100)},
			{ev: rowCE(time.Second, "", 0x200)},
			{ev: rowCE(2*time.Second, "", 0x300), want: []want{{fault.DiagReplaceDIMM, fault.DIMM(0, "DIMM_A1"), nil, "DIMM_A1"}}},
		}},
		// The built-in DIMM rule (tuned in README "Replay"): five distinct
		// failing pages within three days, one error each, trip it...
		{"default DIMM rule: five pages within three days", nil, []step{
			{ev: rowCE(0, "", 0x100)},
			{ev: rowCE(day, "", 0x200)},
			{ev: rowCE(2*day, "", 0x300)},
			{ev: rowCE(2*day+time.Hour, "", 0x400)},
			{ev: rowCE(3*day-time.Second, "", 0x500), want: []want{{fault.DiagReplaceDIMM, fault.DIMM(0, "DIMM_A1"), nil, "DIMM_A1"}}},
		}},
		// ...and never four, nor five spread over more than three days.
		{"default DIMM rule: four pages, or five over four days", nil, []step{
			{ev: rowCE(0, "", 0x100)},
			{ev: rowCE(day, "", 0x200)},
			{ev: rowCE(2*day, "", 0x300)},
			{ev: rowCE(2*day+time.Hour, "", 0x400)},
			{ev: rowCE(4*day, "", 0x500)},
		}},
		{"three pages of one DRAM row offline the row's pages", nil, []step{
			{ev: rowCE(0, "mc0/csrow1/row77", 0x300)},
			{ev: rowCE(time.Second, "mc0/csrow1/row77", 0x100)},
			{ev: rowCE(2*time.Second, "mc0/csrow1/row77", 0x100), want: []want{
				{fault.DiagSoftOfflinePage, fault.Page(0x100), []fault.Resource{fault.Page(0x100)}, "DIMM_A1"},
			}},
			{ev: rowCE(3*time.Second, "mc0/csrow1/row77", 0x200), want: []want{{fault.DiagOfflineRow, fault.Row("mc0/csrow1/row77"),
				[]fault.Resource{fault.Page(0x100), fault.Page(0x200), fault.Page(0x300)}, "DIMM_A1"}}},
		}},
		{"three distinct pages of one row", func(c *Config) { c.Rules.Page.Threshold = 10 }, []step{
			{ev: rowCE(0, "mc0/csrow1/row77", 0x300)},
			{ev: rowCE(time.Second, "mc0/csrow1/row77", 0x100)},
			{ev: rowCE(2*time.Second, "mc0/csrow2/row77", 0x400)},
			{ev: rowCE(3*time.Second, "mc0/csrow1/row77", 0x200), want: []want{{fault.DiagOfflineRow, fault.Row("mc0/csrow1/row77"),
				[]fault.Resource{fault.Page(0x100), fault.Page(0x200), fault.Page(0x300)}, "DIMM_A1"}}},
		}},
		{"five L1 errors in a core bank offline the CPU", nil, []step{
			{ev: cacheCE(0, 3, 1, true)},
			{ev: cacheCE(time.Minute, 3, 1, true)},
			{ev: cacheCE(2*time.Minute, 3, 0, true)},
			{ev: cacheCE(3*time.Minute, 5, 1, true)},
			{ev: cacheCE(4*time.Minute, 3, 2, true)},
			{ev: cacheCE(5*time.Minute, 3, 1, true), want: []want{{fault.DiagOfflineCPU, fault.CPU(3), []fault.Resource{fault.CPU(3)}, "socket 0"}}},
			{ev: cacheCE(6*time.Minute, 3, 1, true)},
		}},
		{"a generic cache level only alerts", nil, []step{
			{ev: cacheCE(0, 3, fault.Unknown, true)},
			{ev: cacheCE(1, 3, fault.Unknown, true)},
			{ev: cacheCE(2, 3, fault.Unknown, true)},
			{ev: cacheCE(3, 3, fault.Unknown, true)},
			{ev: cacheCE(4, 3, fault.Unknown, true), want: []want{{fault.DiagAlertOnly, fault.CPU(3), nil, "socket 0"}}},
		}},
		{"a shared cache bank alerts against the socket", nil, []step{
			{ev: cacheCE(0, 1, 2, false)},
			{ev: cacheCE(1, 2, 2, false)},
			{ev: cacheCE(2, 3, 2, false)},
			{ev: cacheCE(3, 4, 2, false)},
			{ev: cacheCE(4, 5, 2, false), want: []want{{fault.DiagAlertOnly, fault.Socket(0), nil, "socket 0"}}},
		}},
		{"an uncorrected error hard offlines at once, once", nil, []step{
			{ev: memUE(0, 0x2d94), want: []want{{fault.DiagHardOfflinePage, page, []fault.Resource{page}, "memory on socket 0 at PFN 0x2d94"}}},
			{ev: memUE(time.Second, 0x2d94)},
		}},
		{"an uncorrected error does not feed the page SERD", nil, []step{
			{ev: memUE(0, 0x2d94), want: []want{{fault.DiagHardOfflinePage, page, []fault.Resource{page}, "memory on socket 0 at PFN 0x2d94"}}},
			{ev: memCE(time.Second, 0x2d94)},
		}},
		{"an uncorrected error without an address alerts", nil, []step{
			{ev: func() *fault.Event { e := memUE(0, 1); e.AddrValid = false; return e }(),
				want: []want{{fault.DiagAlertOnly, fault.CPU(1), nil, "socket 0"}}},
		}},
		{"reset re-arms a tripped page", nil, []step{
			{ev: memCE(0, 0x2d94)},
			{ev: memCE(time.Second, 0x2d94), want: []want{softOffline}},
			{ev: memCE(2*time.Second, 0x2d94)},
			{reset: page},
			{ev: memCE(3*time.Second, 0x2d94)},
			{ev: memCE(4*time.Second, 0x2d94), want: []want{softOffline}},
		}},
		{"reset forgets the count", noStorm, []step{
			{ev: memCE(0, 0x2d94)},
			{reset: page},
			{ev: memCE(time.Second, 0x2d94)},
		}},
		{"reset re-arms a CPU", func(c *Config) { c.Rules.CPU.Threshold = 1 }, []step{
			{ev: cacheCE(0, 3, 1, true), want: []want{{fault.DiagOfflineCPU, fault.CPU(3), []fault.Resource{fault.CPU(3)}, "socket 0"}}},
			{ev: cacheCE(1, 3, 1, true)},
			{reset: fault.CPU(3)},
			{ev: cacheCE(2, 3, 1, true), want: []want{{fault.DiagOfflineCPU, fault.CPU(3), []fault.Resource{fault.CPU(3)}, "socket 0"}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			if tt.config != nil {
				tt.config(cfg)
			}
			require.NoError(t, cfg.Validate())
			e := NewEngine(cfg)
			for i, s := range tt.steps {
				switch {
				case s.reset != "":
					e.Reset(s.reset)
				case s.ev == nil:
					end := e.Tick(t0.Add(s.tick))
					require.Equal(t, s.stormEnds, end != nil, "step %d", i)
				default:
					requireDecisions(t, s.want, e.Observe(s.ev), fmt.Sprintf("step %d", i))
				}
			}
		})
	}
}

func requireDecisions(t *testing.T, want []want, got []Decision, msg string) {
	t.Helper()
	require.Len(t, got, len(want), msg)
	for i, w := range want {
		c := got[i].Case
		require.Equal(t, w.diag, c.Diagnosis, msg)
		require.Equal(t, w.suspect, c.Suspect, msg)
		require.Equal(t, w.targets, got[i].Targets, msg)
		require.Equal(t, w.fru, c.FRU, msg)
		require.Equal(t, fault.CaseOpen, c.State)
		require.NotEmpty(t, c.Summary)
		require.NotEmpty(t, c.Evidence, msg)
		_, err := uuid.Parse(c.ID)
		require.NoError(t, err)
	}
}

func TestCaseContents(t *testing.T) {
	e := NewEngine(nil)
	first := memCE(0, 0x2d94)
	first.DIMMLabel = "P1_DIMM_A1"
	require.Empty(t, e.Observe(first))
	second := memCE(90*time.Minute, 0x2d94)
	got := e.Observe(second)
	require.Len(t, got, 1)
	c := got[0].Case
	require.Equal(t, RulePage, c.Rule)
	require.Equal(t, second.Received, c.Opened)
	require.Equal(t, "P1_DIMM_A1", c.FRU, "FRU comes from the DIMM label of any evidence-bearing event")
	require.Equal(t, "2 corrected memory errors on page 0x2d94 within 24h (threshold 2): soft offline the page", c.Summary)
	require.Len(t, c.Evidence, 2)
	require.Equal(t, first.Received, c.Evidence[0].Time)
	require.Equal(t, second.Received, c.Evidence[1].Time)
	require.Equal(t, second.PhysAddr, c.Evidence[1].Addr)
}

func TestEvidenceIsCapped(t *testing.T) {
	cfg := Defaults()
	cfg.Rules.CPU.Threshold = 40
	cfg.Engine.Evidence = 16
	e := NewEngine(cfg)
	var got []Decision
	for i := 0; i < 40; i++ {
		got = e.Observe(cacheCE(time.Duration(i)*time.Second, 2, 1, true))
	}
	require.Len(t, got, 1)
	ev := got[0].Case.Evidence
	require.Len(t, ev, 16)
	require.Equal(t, t0.Add(39*time.Second), ev[15].Time, "the most recent events are kept")
	require.Equal(t, t0.Add(24*time.Second), ev[0].Time)
}

func TestStormTripsOnceAndEndsAfterQuiet(t *testing.T) {
	cfg := Defaults()
	cfg.Rules.Storm = StormRule{Enabled: true, Rate: 100, Over: 10 * time.Second, Quiet: 60 * time.Second}
	e := NewEngine(cfg)

	// 100/s for 10 s is exactly the limit: no storm yet.
	var storms []Decision
	at := time.Duration(0)
	observe := func(n int, every time.Duration) {
		for i := 0; i < n; i++ {
			for _, d := range e.Observe(edacCE(at, "A1", 1)) {
				if d.Case.Diagnosis == fault.DiagStorm {
					storms = append(storms, d)
				}
			}
			at += every
		}
	}
	observe(1000, 10*time.Millisecond)
	require.False(t, e.Storming())
	require.Empty(t, storms)

	// Double the rate: one storm case, however long it lasts.
	observe(4000, 5*time.Millisecond)
	require.True(t, e.Storming())
	require.Len(t, storms, 1)
	storm := storms[0].Case
	require.Equal(t, fault.Machine, storm.Suspect)
	require.Empty(t, storms[0].Targets)
	require.NotEmpty(t, storm.Evidence)
	require.Contains(t, storm.Summary, "storm")

	// Engines kept counting through the storm: the DIMM rule tripped.
	require.True(t, e.Levels(fault.DIMM(0, "A1"))[0].Tripped)

	// Quiet: the rate falls to zero. Two seconds later the 10 s average is
	// still 8 s × 200/s = 1600 > 1000; six seconds later it is 800, and the
	// storm ends 60 s after that.
	stormEnd := at
	require.Nil(t, e.Tick(t0.Add(stormEnd+2*time.Second)))
	require.True(t, e.Storming())
	require.Nil(t, e.Tick(t0.Add(stormEnd+6*time.Second)))
	require.Nil(t, e.Tick(t0.Add(stormEnd+65*time.Second)))
	require.True(t, e.Storming(), "below the rate since +6s, only 59s ago")
	end := e.Tick(t0.Add(stormEnd + 66*time.Second))
	require.NotNil(t, end)
	require.Equal(t, storm.ID, end.CaseID)
	require.Equal(t, storm.Opened, end.Started)
	require.False(t, e.Storming())
	require.Nil(t, e.Tick(t0.Add(stormEnd+72*time.Second)), "ends once")

	// A new flood is a new storm.
	at = stormEnd + 80*time.Second
	observe(3000, 2*time.Millisecond)
	require.Len(t, storms, 2)
	require.NotEqual(t, storm.ID, storms[1].Case.ID)
}

func TestStormRateRecoveringResetsQuiet(t *testing.T) {
	cfg := Defaults()
	cfg.Rules.Storm = StormRule{Enabled: true, Rate: 10, Over: time.Second, Quiet: 5 * time.Second}
	e := NewEngine(cfg)
	burst := func(from time.Duration) {
		for i := 0; i < 20; i++ {
			e.Observe(edacCE(from+time.Duration(i)*time.Millisecond, "A1", 1))
		}
	}
	burst(0)
	require.True(t, e.Storming())
	require.Nil(t, e.Tick(t0.Add(2*time.Second))) // below from here
	burst(4 * time.Second)                        // above again
	require.Nil(t, e.Tick(t0.Add(7500*time.Millisecond)), "quiet restarted at the second burst")
	require.True(t, e.Storming())
	require.Nil(t, e.Tick(t0.Add(12*time.Second)), "below since 7.5s, 4.5s ago")
	require.NotNil(t, e.Tick(t0.Add(12500*time.Millisecond)))
}

func TestLevelsAndSnapshot(t *testing.T) {
	e := NewEngine(nil)
	e.Observe(memCE(0, 0x10))
	e.Observe(edacCE(0, "A1", 7))
	e.Observe(cacheCE(0, 4, 1, true))
	e.Observe(cacheCE(0, 4, fault.Unknown, true))

	lv := e.Levels(fault.Page(0x10))
	require.Equal(t, Level{Rule: RulePage, Resource: fault.Page(0x10), Count: 1, Threshold: 2, Window: 24 * time.Hour}, lv[0])
	require.Equal(t, lv, e.Levels("page:0x0010"), "any spelling of the page, reported as the engine names it")
	require.Equal(t, fault.CPU(4), e.Levels("cpu:04")[0].Resource)
	require.Equal(t, uint64(7), e.Levels(fault.DIMM(0, "A1"))[0].Count)
	cpu := e.Levels(fault.CPU(4))
	require.Equal(t, uint64(1), cpu[0].Count)
	require.Equal(t, RuleCache, cpu[1].Rule)
	require.Equal(t, uint64(1), cpu[1].Count)
	require.Equal(t, uint64(1+7+1+1), e.Levels(fault.Machine)[0].Count, "storm counts every corrected error")
	require.Nil(t, e.Levels("bogus:1"))
	require.Nil(t, e.Levels("page:zz"))

	// A day later the page has left its window.
	e.Tick(t0.Add(25 * time.Hour))
	require.Equal(t, uint64(0), e.Levels(fault.Page(0x10))[0].Count)

	s := e.Snapshot()
	require.Equal(t, uint64(4), s.Events)
	require.False(t, s.Storming)
	byRule := map[string]RuleStats{}
	for _, r := range s.Rules {
		byRule[r.Rule] = r
	}
	require.Equal(t, 0, byRule[RulePage].Tracked, "expired by Tick")
	require.Equal(t, uint64(1), byRule[RulePage].Expired)
}

// TestTrackedKeysAreBounded: a storm over more pages than max_tracked
// keeps memory flat and counts the evictions.
func TestTrackedKeysAreBounded(t *testing.T) {
	cfg := Defaults()
	cfg.Engine.MaxTracked = 1000
	cfg.Rules.Storm.Enabled = false
	e := NewEngine(cfg)
	for i := uint64(0); i < 5000; i++ {
		require.Empty(t, e.Observe(memCE(time.Duration(i)*time.Millisecond, i)))
	}
	s := e.Snapshot()
	require.Equal(t, 1000, s.Rules[0].Tracked)
	require.Equal(t, uint64(4000), s.Rules[0].Evicted)
	// The most recent pages are still tracked: a second error trips.
	require.Len(t, e.Observe(memCE(6*time.Second, 4999)), 1)
	// The oldest were forgotten: a second error starts over.
	require.Empty(t, e.Observe(memCE(6*time.Second, 0)))
}

// TestExpiredPagesAreSweptAsEventsArrive: with no cap pressure, old pages
// still go away, paid for by later events.
func TestExpiredPagesAreSweptAsEventsArrive(t *testing.T) {
	cfg := Defaults()
	cfg.Rules.Page.Window = time.Minute
	cfg.Rules.Storm.Enabled = false
	e := NewEngine(cfg)
	for i := uint64(0); i < 1000; i++ {
		e.Observe(memCE(time.Duration(i)*time.Millisecond, i))
	}
	for i := uint64(0); i < 1000; i++ {
		e.Observe(memCE(time.Hour+time.Duration(i)*time.Millisecond, 100000+i))
	}
	s := e.Snapshot()
	require.Equal(t, 1000, s.Rules[0].Tracked)
	require.Equal(t, uint64(1000), s.Rules[0].Expired)
}

// A case lists every error that filled its engine (up to the evidence cap),
// not one per SERD slot, and nothing from other resources or outside the
// window.
func TestEvidenceListsEveryError(t *testing.T) {
	e := NewEngine(Defaults())
	require.Empty(t, e.Observe(cacheCE(-25*time.Hour, 2, 0, true))) // outside the window
	for i := 0; i < 4; i++ {
		require.Empty(t, e.Observe(cacheCE(time.Duration(i)*time.Minute, 2, 0, true)))
		require.Empty(t, e.Observe(cacheCE(time.Duration(i)*time.Minute, 3, 0, true)))
	}
	ds := e.Observe(cacheCE(10*time.Minute, 2, 0, true))
	require.Len(t, ds, 1)
	require.Len(t, ds[0].Case.Evidence, 5)
	for _, ev := range ds[0].Case.Evidence {
		require.Equal(t, 2, ev.CPU)
		require.False(t, ev.Time.Before(t0))
	}
}

// A case's ID is drawn on an earlier record that decided nothing, so the
// deciding record does not pay for it; IDs stay unique version 4 UUIDs.
func TestCaseIDDrawnAhead(t *testing.T) {
	e := NewEngine(nil)
	require.Empty(t, e.Observe(memCE(0, 0x100)))
	ahead := e.nextID
	require.NotEmpty(t, ahead, "a record that decided nothing draws the next case's ID")
	require.Empty(t, e.Observe(memCE(time.Second, 0x200)))
	require.Equal(t, ahead, e.nextID, "one ID is drawn ahead, not one per record")

	got := e.Observe(memCE(time.Minute, 0x100))
	require.Len(t, got, 1)
	require.Equal(t, ahead, got[0].Case.ID, "the deciding record takes the ID drawn ahead")
	require.Empty(t, e.nextID, "a deciding record draws none")

	seen := map[string]bool{ahead: true}
	for i := range 50 {
		pfn := uint64(0x1000 + i)
		e.Observe(memCE(time.Hour+time.Duration(i)*time.Second, pfn))
		got := e.Observe(memCE(time.Hour+time.Duration(i)*time.Second+time.Millisecond, pfn))
		require.Len(t, got, 1)
		id := got[0].Case.ID
		require.False(t, seen[id], "case %d reuses ID %s", i, id)
		seen[id] = true
		u, err := uuid.Parse(id)
		require.NoError(t, err)
		require.Equal(t, uuid.Version(4), u.Version())
	}
}

// An error whose record more than the log's size of other events pushed
// out of the evidence log still has an entry in the case, made from what
// the rule's table kept: each case lists every error it counted (the
// storm golden test once showed a page case with one entry for two).
func TestEvidenceOfErrorsThatLeftTheLog(t *testing.T) {
	others := func(e *Engine, from time.Duration) {
		// Other pages, each once: more events than the log holds.
		for i := range evidenceLogSize + 10 {
			require.Empty(t, e.Observe(memCE(from+time.Duration(i)*time.Millisecond, uint64(0x10000+i))))
		}
	}
	t.Run("page", func(t *testing.T) {
		e := NewEngine(nil)
		first := memCE(0, 0x2d94)
		require.Empty(t, e.Observe(first))
		others(e, time.Second)
		second := memCE(time.Hour, 0x2d94)
		got := e.Observe(second)
		require.Len(t, got, 1)
		ev := got[0].Case.Evidence
		require.Len(t, ev, 2, "both errors the rule counted")
		require.Equal(t, first.Received, ev[0].Time, "the stand-in keeps when the error came")
		require.Equal(t, uint64(0x2d94)*fault.PageSize, ev[0].Addr)
		require.Equal(t, uint32(1), ev[0].Count)
		require.Equal(t, fault.ClassMemory, ev[0].Class)
		require.Contains(t, ev[0].Summary, "page=0x2d94")
		require.Contains(t, ev[0].Summary, "error history keeps it")
		require.Equal(t, fault.EvidenceOf(second), ev[1], "the record still in the log is listed as it came")
	})
	t.Run("row", func(t *testing.T) {
		e := NewEngine(nil)
		require.Empty(t, e.Observe(rowCE(0, "mc0/csrow1/row77", 0x300)))
		others(e, time.Second)
		require.Empty(t, e.Observe(rowCE(time.Minute, "mc0/csrow1/row77", 0x100)))
		got := e.Observe(rowCE(2*time.Minute, "mc0/csrow1/row77", 0x200))
		require.Len(t, got, 1)
		require.Equal(t, fault.DiagOfflineRow, got[0].Case.Diagnosis)
		ev := got[0].Case.Evidence
		require.Len(t, ev, 3, "one entry per page the rule counted")
		require.Equal(t, t0, ev[0].Time)
		require.Equal(t, uint64(0x300)*fault.PageSize, ev[0].Addr)
		require.Contains(t, ev[0].Summary, "row=mc0/csrow1/row77")
		require.Equal(t, t0.Add(time.Minute), ev[1].Time)
		require.Equal(t, t0.Add(2*time.Minute), ev[2].Time)
	})
	t.Run("capped, most recent first", func(t *testing.T) {
		cfg := Defaults()
		cfg.Rules.CPU.Threshold = 20
		cfg.Engine.Evidence = 16
		e := NewEngine(cfg)
		for i := range 19 {
			require.Empty(t, e.Observe(cacheCE(time.Duration(i)*time.Second, 2, 1, true)))
		}
		others(e, time.Minute)
		got := e.Observe(cacheCE(time.Hour, 2, 1, true))
		require.Len(t, got, 1)
		ev := got[0].Case.Evidence
		require.Len(t, ev, 16)
		require.Equal(t, t0.Add(4*time.Second), ev[0].Time, "the newest stand-ins fill what the limit leaves")
		require.Equal(t, t0.Add(18*time.Second), ev[14].Time)
		require.Equal(t, t0.Add(time.Hour), ev[15].Time)
		require.Contains(t, ev[0].Summary, "cpu=2")
	})
}
