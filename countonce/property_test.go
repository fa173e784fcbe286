package countonce

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// A kernel configuration decides which paths report each error.
type kernelConfig struct {
	name string
	// paths returns, for the i-th error on its page, whether mce_record,
	// mc_event (+ the EDAC counter), extlog_mem_event report it.
	paths func(nthOnPage int) (mce, mc, extlog bool)
	// smca: the mce_record has no usable page, only socket and UMC.
	smca bool
	// intelLoc: the mce_record has its page and an Intel bank/channel that
	// the layout cannot join (two controllers): the join is learned, so
	// which errors get a DIMM depends on timing; only the totals are exact.
	intelLoc bool
	// layout given to the stage (EDAC bound).
	edac bool
	// unplaced: a Zen UMC without SyndV under amd64_edac's per-rank labels:
	// the mce_record has socket and UMC but no chip select, the mc_event
	// (and its counter) is at csrow 0 of channel 0 (6.12) with no page.
	unplaced bool
}

var configs = []kernelConfig{
	{name: "os-first, EDAC, no CEC", edac: true, paths: func(int) (bool, bool, bool) { return true, true, false }},
	// CEC at threshold 2: every second error of a page gets past it.
	{name: "os-first, EDAC, CEC 2", edac: true, paths: func(n int) (bool, bool, bool) { return true, n%2 == 1, false }},
	{name: "os-first, EDAC, CEC 1023", edac: true, paths: func(int) (bool, bool, bool) { return true, false, false }},
	{name: "os-first, no EDAC", paths: func(int) (bool, bool, bool) { return true, false, false }},
	{name: "firmware-first GHES", edac: true, paths: func(int) (bool, bool, bool) { return false, true, false }},
	{name: "firmware-first eMCA", paths: func(int) (bool, bool, bool) { return true, false, true }},
	{name: "eMCA with EDAC", edac: true, paths: func(int) (bool, bool, bool) { return true, true, true }},
	{name: "AMD SMCA, EDAC", edac: true, smca: true, paths: func(int) (bool, bool, bool) { return true, true, false }},
	{name: "AMD SMCA without SyndV, per-rank labels", edac: true, smca: true, unplaced: true, paths: func(int) (bool, bool, bool) { return true, true, false }},
	{name: "Intel, EDAC, CEC 2, learned join", edac: true, intelLoc: true, paths: func(n int) (bool, bool, bool) { return true, n%2 == 1, false }},
}

// unplacedLabel is where amd64_edac (6.12) logs a UMC error without SyndV.
const unplacedLabel = "mc#0csrow#0channel#0"

const (
	nPages   = 4
	pollEach = 3 * time.Second
)

func pageAddr(p int) uint64 { return uint64(0x10000+p) << 12 }

// dimmOf: pages 0 and 2 on DIMM_A1 (channel 0), 1 and 3 on DIMM_A2.
func dimmOf(p int) (label string, channel int) {
	if p%2 == 0 {
		return "DIMM_A1", 0
	}
	return "DIMM_A2", 1
}

type delivery struct {
	at time.Time
	ev fault.Event
}

// TestEachErrorCountedOnce is the property: for random interleavings of
// mce_record, mc_event, extlog_mem_event and EDAC counter deltas that
// describe the same N errors, the engines see exactly N errors, each
// error's page at most once, and its DIMM once when any record named it.
func TestEachErrorCountedOnce(t *testing.T) {
	for seed := uint64(1); seed <= 400; seed++ {
		cfg := configs[seed%uint64(len(configs))]
		t.Run(fmt.Sprintf("%d/%s", seed, cfg.name), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			base := time.Unix(1_700_000_000, 0)
			var recs []delivery
			counters := map[string][]time.Time{} // label -> error times the counter moved
			nth := map[int]int{}
			n, wantPages, wantDIMMs := 0, 0, 0
			tm := base
			for burst := 0; burst < 1+rng.IntN(25); burst++ {
				tm = tm.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
				page := rng.IntN(nPages)
				k := 1 + rng.IntN(3) // one injection of k errors: k mce_records, one mc_event
				label, ch := dimmOf(page)
				mcCount := 0
				for range k {
					mce, mc, ext := cfg.paths(nth[page])
					nth[page]++
					n++
					if !cfg.smca && (mce || mc || ext) {
						wantPages++
					} else if cfg.smca && mc && !cfg.unplaced {
						wantPages++
					}
					if (mc || cfg.smca) && !cfg.unplaced {
						wantDIMMs++
					}
					if mce {
						ev := fault.NewEvent(fault.SourceTraceMCE, time.Time{})
						ev.Class, ev.Socket, ev.Bank, ev.CPU = fault.ClassMemory, 0, 4, rng.IntN(4)
						if cfg.intelLoc {
							ev.Vendor, ev.Channel, ev.Bank = fault.VendorIntel, ch, 7
						}
						if cfg.smca {
							ev.Vendor, ev.Channel = fault.VendorAMD, ch
						} else {
							ev.PhysAddr, ev.AddrValid, ev.AddrLSB = pageAddr(page)|0x40, true, 12
						}
						recs = append(recs, delivery{tm.Add(jitter(rng)), ev})
					}
					if ext {
						ev := fault.NewEvent(fault.SourceTraceExtlog, time.Time{})
						ev.Class = fault.ClassMemory
						ev.PhysAddr, ev.AddrValid, ev.AddrLSB = pageAddr(page), true, 12
						recs = append(recs, delivery{tm.Add(jitter(rng)), ev})
					}
					if mc {
						mcCount++
						if cfg.unplaced {
							label = unplacedLabel
						}
						counters[label] = append(counters[label], tm)
					}
				}
				if mcCount > 0 {
					ev := fault.NewEvent(fault.SourceTraceMC, time.Time{})
					ev.Class, ev.MC, ev.DIMMLabel, ev.Count = fault.ClassMemory, 0, label, uint32(mcCount)
					ev.PhysAddr, ev.AddrValid, ev.AddrLSB = pageAddr(page), true, 12
					if cfg.unplaced {
						ev.PhysAddr, ev.AddrValid, ev.AddrLSB, ev.LocatedBy = 0, false, 0, fault.LocatedByUnplaced
					}
					recs = append(recs, delivery{tm.Add(jitter(rng)), ev})
				}
			}
			// The poller reads each DIMM's counter every pollEach, starting
			// at a random phase, until every error is in a delta.
			if len(counters) > 0 {
				poll := base.Add(time.Duration(rng.IntN(int(pollEach))))
				last := map[string]int{}
				for ; poll.Before(tm.Add(2 * pollEach)); poll = poll.Add(pollEach) {
					for _, label := range []string{"DIMM_A1", "DIMM_A2", unplacedLabel} {
						c := 0
						for _, at := range counters[label] {
							if !at.After(poll) {
								c++
							}
						}
						if d := c - last[label]; d > 0 {
							ev := fault.NewEvent(fault.SourceEDACPoll, time.Time{})
							ev.Class, ev.MC, ev.DIMMLabel, ev.Count = fault.ClassMemory, 0, label, uint32(d)
							recs = append(recs, delivery{poll, ev})
						}
						last[label] = c
					}
				}
			}
			sort.SliceStable(recs, func(i, j int) bool { return recs[i].at.Before(recs[j].at) })

			s := New(Options{})
			switch {
			case cfg.unplaced:
				var ranks []Slot
				for ch := range 2 {
					for cs := range 2 {
						ranks = append(ranks, Slot{MC: 0, Label: fmt.Sprintf("mc#0csrow#%dchannel#%d", cs, ch), Socket: fault.Unknown, Channel: ch, CSRow: cs})
					}
				}
				s.SetLayout(ranks)
			case cfg.intelLoc:
				s.SetLayout([]Slot{
					{MC: 0, Label: "DIMM_A1", Socket: 0, Channel: 0}, {MC: 0, Label: "DIMM_A2", Socket: 0, Channel: 1},
					{MC: 1, Label: "DIMM_B1", Socket: 0, Channel: 0}, {MC: 1, Label: "DIMM_B2", Socket: 0, Channel: 1},
				})
			case cfg.edac:
				s.SetLayout([]Slot{
					{MC: 0, Label: "DIMM_A1", Socket: fault.Unknown, Channel: 0},
					{MC: 0, Label: "DIMM_A2", Socket: fault.Unknown, Channel: 1},
				})
			}
			var got []Verdict
			for _, r := range recs {
				r.ev.Received = r.at
				vs := s.Observe(r.ev)
				t.Logf("%s %s -> %v", r.at.Format("05.000"), r.ev.String(), vs)
				got = append(got, vs...)
			}
			got = append(got, s.Flush(tm.Add(time.Hour))...)
			require.Zero(t, s.Held())

			errs, pages, dimms := 0, 0, 0
			for _, v := range got {
				if v.New&FacetError != 0 {
					errs += int(v.Event.Count)
				}
				if v.New&FacetPage != 0 {
					require.True(t, v.Event.AddrValid, "page facet without a page: %s", v)
					pages += int(v.Event.Count)
				}
				if v.New&FacetDIMM != 0 {
					require.NotEmpty(t, v.Event.DIMMLabel, "dimm facet without a DIMM: %s", v)
					dimms += int(v.Event.Count)
				}
			}
			require.Equal(t, n, errs, "errors counted (%d records)", len(recs))
			require.Equal(t, wantPages, pages, "pages counted")
			if cfg.intelLoc {
				require.GreaterOrEqual(t, dimms, wantDIMMs, "every error with an mc_event has its DIMM")
				require.LessOrEqual(t, dimms, n, "no error's DIMM counted twice")
			} else {
				require.Equal(t, wantDIMMs, dimms, "DIMMs counted")
			}
		})
	}
}

// jitter is how late the daemon reads a record: per-CPU buffers are read
// in turn, so records of one error arrive in any order, well within the
// window.
func jitter(rng *rand.Rand) time.Duration {
	return time.Duration(rng.IntN(1500)) * time.Millisecond
}
