package replay

import (
	"sort"
	"time"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// cec models the kernel's RAS correctable-error collector
// (drivers/ras/cec.c) for one host: one page of 512 entries sorted by PFN,
// each with a 10-bit error count and a 2-bit generation. An error sets its
// page's generation to 3 and adds one; at the action threshold the page is
// soft-offlined and its entry deleted. Generations decay by one at every
// "spring cleaning", which happens every decay interval (24 h by default)
// and after every 128 insertions or increments. When the array is full,
// the entry with the lowest (generation, count) is dropped before the new
// error is looked up — so a page can lose its own history. Counts never
// decay: the generation only decides who is evicted.
//
// Approximations: the decay timer starts at the host's first record, not
// at boot; an error standing for N errors (count) is entered N times, at
// most the threshold; the collector sees every corrected memory error with
// a page-exact address on the MCE path (firmware-first machines, where it
// sees nothing, cannot be told from a trace).
type cec struct {
	threshold uint32
	interval  time.Duration
	next      time.Time
	entries   []cecEntry
	inserts   int
}

type cecEntry struct {
	pfn   uint64
	gen   uint8
	count uint16
}

const (
	cecMaxEntries = 512 // a 4 KiB page of u64s
	cecCleanEvery = cecMaxEntries >> 2
	cecCountMax   = 1023
	cecGenMax     = 3
)

func newCEC(threshold uint32, interval time.Duration) *cec {
	return &cec{threshold: min(max(threshold, 1), cecCountMax), interval: interval}
}

// cecSees: corrected memory errors with a page-exact address. Which
// records reach the MCE path at all is the policy's Sees (mcePath).
func cecSees(ev *fault.Event) bool {
	return ev.Class == fault.ClassMemory && ev.Severity == fault.SeverityCorrected &&
		ev.AddrValid && ev.AddrLSB <= 12 && ev.Source != fault.SourceEDACPoll
}

// ObserveParts implements decider; CEC reads raw MCE records, so parts do
// not apply.
func (c *cec) ObserveParts(ev *fault.Event, _ policy.Parts) []policy.Decision { return c.Observe(ev) }

// Observe enters one record.
func (c *cec) Observe(ev *fault.Event) []policy.Decision {
	if !cecSees(ev) {
		return nil
	}
	t := ev.Received
	if c.next.IsZero() {
		c.next = t.Add(c.interval)
	}
	for !t.Before(c.next) {
		c.springClean()
		c.next = c.next.Add(c.interval)
	}
	pfn := ev.PFN()
	for n := min(ev.Count, c.threshold); n > 0; n-- {
		if c.add(pfn) {
			r := fault.Page(pfn)
			return []policy.Decision{{
				// Evidence carries only what the per-DIMM budget reads:
				// fault.EvidenceOf formats a summary, and a page's errors
				// after its offline trip CEC again and again.
				Case: fault.Case{Opened: t, Rule: "cec", Diagnosis: fault.DiagSoftOfflinePage, Suspect: r,
					FRU: ev.DIMMLabel, State: fault.CaseOpen,
					Evidence: []fault.Evidence{{Time: t, Source: ev.Source, Class: ev.Class, Count: ev.Count, DIMM: ev.DIMMLabel}}},
				Targets: []fault.Resource{r},
			}}
		}
	}
	return nil
}

// add enters one error and reports whether the page reached the threshold.
func (c *cec) add(pfn uint64) bool {
	if len(c.entries) == cecMaxEntries {
		c.evict()
	}
	i := sort.Search(len(c.entries), func(i int) bool { return c.entries[i].pfn >= pfn })
	if i == len(c.entries) || c.entries[i].pfn != pfn {
		c.entries = append(c.entries, cecEntry{})
		copy(c.entries[i+1:], c.entries[i:])
		c.entries[i] = cecEntry{pfn: pfn}
	}
	e := &c.entries[i]
	e.gen = cecGenMax
	if e.count < cecCountMax {
		e.count++
	}
	if uint32(e.count) >= c.threshold {
		c.entries = append(c.entries[:i], c.entries[i+1:]...)
		return true
	}
	c.inserts++
	if c.inserts >= cecCleanEvery {
		c.springClean()
	}
	return false
}

// evict drops the first entry with the lowest generation, then count.
func (c *cec) evict() {
	best := 0
	key := func(e cecEntry) int { return int(e.gen)<<10 | int(e.count) }
	for i := range c.entries {
		if key(c.entries[i]) < key(c.entries[best]) {
			best = i
		}
	}
	c.entries = append(c.entries[:best], c.entries[best+1:]...)
}

func (c *cec) springClean() {
	for i := range c.entries {
		if c.entries[i].gen > 0 {
			c.entries[i].gen--
		}
	}
	c.inserts = 0
}
