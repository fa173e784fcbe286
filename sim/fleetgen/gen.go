package fleetgen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Stats summarise a generated trace.
type Stats struct {
	Hosts           int
	HostsWithErrors int
	Records         uint64 // error lines written
	CorrectedErrors uint64 // sum of counts of corrected memory records
	UEs             uint64
	CacheErrors     uint64
	// Faults counts faults by "mode/transient" or "mode/permanent".
	Faults map[string]int
	// ErrorsPerDIMM holds the corrected error count of every DIMM that
	// logged any, in generation order.
	ErrorsPerDIMM []uint64
}

// Validate reports impossible parameters.
func (p *Params) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if p.Hosts < 1 {
		bad("hosts must be >= 1, got %d", p.Hosts)
	}
	if p.Duration <= 0 {
		bad("duration must be > 0, got %s", p.Duration)
	}
	if p.DIMMsPerHost < 1 || p.DIMMGiB < 1 || p.RanksPerDIMM < 1 || p.DevicesPerRank < 1 {
		bad("DIMMs per host, DIMM size, ranks and devices must all be >= 1")
	}
	if p.CPUs < 1 || p.ThreadsPerCore < 1 || p.CPUs%p.ThreadsPerCore != 0 {
		bad("cpus (%d) must be a positive multiple of threads per core (%d)", p.CPUs, p.ThreadsPerCore)
	}
	if !(p.FITScale >= 0) || !(p.ErrorsMedian > 0) || !(p.ErrorsSigma >= 0) || !(p.BurstMean >= 1) ||
		!(p.TransientErrorsMean >= 1) || !(p.SuddenUEPerDIMMYear >= 0) || !(p.CacheFaultsPerHostYear >= 0) {
		bad("rates and scales must be >= 0, medians > 0, burst and transient means >= 1")
	}
	if p.MaxErrorsPerFault < 1 {
		bad("max errors per fault must be >= 1, got %d", p.MaxErrorsPerFault)
	}
	return errors.Join(errs...)
}

// Layout constants of one rank. Banks: 16 (DDR4: 4 bank groups × 4).
// A "row" here is the rank-wide row (8 KiB: 1 KiB page × 8 data devices
// of a x8 rank, or 512 B × 16 x4 devices), so one DRAM row spans two 4 KiB
// pages. Columns are 64-byte lines within the row.
const (
	banks       = 16
	rowBytes    = 8192
	lineBytes   = 64
	linesPerRow = rowBytes / lineBytes
	year        = 365 * 24 * time.Hour
)

type kind uint8

const (
	kindCE kind = iota
	kindUE
	kindCache
)

// event is one record before it is written.
type event struct {
	t     int64 // Unix seconds
	addr  uint64
	count uint32
	dimm  int16
	rank  uint8
	bank  uint8
	kind  kind
	level uint8
	cpu   int32
	row   uint32
}

// host is the generator's view of one machine.
type host struct {
	p        *Params
	rng      *rand.Rand
	dimmSize uint64
	rankSize uint64
	rows     uint32
	start    int64
	end      int64
	events   []event
	labels   []string // per DIMM
	mcs      []int
}

// Generate writes a trace of p.Hosts hosts to w, host by host (each host's
// records in time order), so memory stays bounded by one host's history.
// progress, when not nil, is called after each host.
func Generate(w io.Writer, p Params, progress func(done, total int)) (Stats, error) {
	if err := p.Validate(); err != nil {
		return Stats{}, fmt.Errorf("fleet parameters: %w", err)
	}
	st := Stats{Hosts: p.Hosts, Faults: map[string]int{}}
	bw := bufio.NewWriterSize(w, 1<<20)
	var buf []byte
	h := &host{p: &p}
	h.dimmSize = uint64(p.DIMMGiB) << 30
	h.rankSize = h.dimmSize / uint64(p.RanksPerDIMM)
	h.rows = uint32(h.rankSize / (banks * rowBytes))
	h.start, h.end = p.Start.Unix(), p.Start.Add(p.Duration).Unix()
	for d := 0; d < p.DIMMsPerHost; d++ {
		label, mc := dimmLabel(&p, d)
		h.labels, h.mcs = append(h.labels, label), append(h.mcs, mc)
	}
	for i := 0; i < p.Hosts; i++ {
		// One stream per host: a host's history does not depend on how
		// many hosts came before it.
		h.rng = rand.New(rand.NewPCG(p.Seed, uint64(i)))
		h.events = h.events[:0]
		name := hostName(i)
		h.generate(&st)
		slices.SortStableFunc(h.events, func(a, b event) int { return int(a.t - b.t) })
		buf = appendHostLine(buf[:0], name, &p)
		for k := range h.events {
			buf = h.appendEvent(buf, name, &h.events[k])
			if len(buf) > 64<<10 {
				if _, err := bw.Write(buf); err != nil {
					return st, fmt.Errorf("writing trace: %w", err)
				}
				buf = buf[:0]
			}
		}
		if _, err := bw.Write(buf); err != nil {
			return st, fmt.Errorf("writing trace: %w", err)
		}
		if len(h.events) > 0 {
			st.HostsWithErrors++
		}
		st.Records += uint64(len(h.events))
		if progress != nil {
			progress(i+1, p.Hosts)
		}
	}
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("writing trace: %w", err)
	}
	return st, nil
}

func hostName(i int) string { return fmt.Sprintf("host%05d", i) }

// generate draws every fault of one host and their errors.
func (h *host) generate(st *Stats) {
	p := h.p
	hours := p.Duration.Hours()
	devices := float64(p.RanksPerDIMM * p.DevicesPerRank)
	years := float64(p.Duration) / float64(year)
	for d := 0; d < p.DIMMsPerHost; d++ {
		before := len(h.events)
		for _, m := range p.Modes {
			for _, permanent := range []bool{false, true} {
				fit := m.TransientFIT
				label := m.Name + "/transient"
				if permanent {
					fit, label = m.PermanentFIT, m.Name+"/permanent"
				}
				n := poisson(h.rng, fit*p.FITScale*devices*hours*1e-9)
				for k := 0; k < n; k++ {
					st.Faults[label]++
					h.fault(d, m, permanent, st)
				}
			}
		}
		for k := poisson(h.rng, p.SuddenUEPerDIMMYear*years); k > 0; k-- {
			ev := h.at(d, h.rng.IntN(p.RanksPerDIMM), h.rng.IntN(banks), h.rng.Uint32N(h.rows), h.rng.IntN(linesPerRow))
			ev.t, ev.kind = h.uniformTime(h.start), kindUE
			h.events = append(h.events, ev)
			st.UEs++
		}
		var ce uint64
		for _, ev := range h.events[before:] {
			if ev.kind == kindCE {
				ce += uint64(ev.count)
			}
		}
		if ce > 0 {
			st.ErrorsPerDIMM = append(st.ErrorsPerDIMM, ce)
			st.CorrectedErrors += ce
		}
	}
	for k := poisson(h.rng, p.CacheFaultsPerHostYear*years); k > 0; k-- {
		h.cacheFault(st)
	}
}

// fault emits one DRAM fault's errors and, maybe, its UE.
func (h *host) fault(d int, m Mode, permanent bool, st *Stats) {
	p := h.p
	rng := h.rng
	onset := h.uniformTime(h.start)
	loc := location{rank: rng.IntN(p.RanksPerDIMM), bank: rng.IntN(banks), row: rng.Uint32N(h.rows), line: rng.IntN(linesPerRow)}
	if m.footprint == fpMultiBank {
		loc.banks = 2 + rng.IntN(3) // GUESS: 2-4 banks
	}
	var n int
	spanEnd := h.end
	if permanent {
		active := float64(h.end-onset) / year.Seconds()
		perYear := math.Exp(math.Log(p.ErrorsMedian) + p.ErrorsSigma*rng.NormFloat64())
		n = min(max(int(perYear*active+0.5), 1), p.MaxErrorsPerFault)
	} else {
		n = 1 + geometric(rng, p.TransientErrorsMean-1)
		spanEnd = min(onset+int64(p.TransientSpan.Seconds()), h.end)
	}
	for n > 0 {
		t := onset + rng.Int64N(max(spanEnd-onset, 1))
		burst := min(1+geometric(rng, p.BurstMean-1), n)
		n -= burst
		last := -1 // index, not pointer: append may move the slice
		for b := 0; b < burst && t < h.end; b++ {
			ev := h.errorAt(d, m.footprint, loc)
			ev.t = t
			if last >= 0 && h.events[last].t == ev.t && h.events[last].addr == ev.addr {
				h.events[last].count++
			} else {
				h.events = append(h.events, ev)
				last = len(h.events) - 1
			}
			t += int64(rng.ExpFloat64() * p.BurstGap.Seconds())
		}
	}
	if permanent && rng.Float64() < m.UEProbability {
		t := onset + int64(rng.ExpFloat64()*m.UELagMean.Seconds())
		if t < h.end {
			ev := h.errorAt(d, m.footprint, loc)
			ev.t, ev.kind = t, kindUE
			h.events = append(h.events, ev)
			st.UEs++
		}
	}
}

type location struct {
	rank, bank int
	row        uint32
	line       int
	banks      int // multi-bank: how many banks from bank on
}

// errorAt draws one error address within the fault's footprint.
func (h *host) errorAt(d int, fp footprint, l location) event {
	rng := h.rng
	switch fp {
	case fpColumn:
		l.row = rng.Uint32N(h.rows)
	case fpRow:
		l.line = rng.IntN(linesPerRow)
	case fpBank:
		l.row, l.line = rng.Uint32N(h.rows), rng.IntN(linesPerRow)
	case fpMultiBank:
		l.bank = (l.bank + rng.IntN(l.banks)) % banks
		l.row, l.line = rng.Uint32N(h.rows), rng.IntN(linesPerRow)
	case fpMultiRank:
		l.rank, l.bank = rng.IntN(h.p.RanksPerDIMM), rng.IntN(banks)
		l.row, l.line = rng.Uint32N(h.rows), rng.IntN(linesPerRow)
	}
	return h.at(d, l.rank, l.bank, l.row, l.line)
}

// at maps a DRAM location to a physical address. Simplification: DIMMs
// are laid end to end and a DIMM is not interleaved with others (real
// controllers interleave channels and ranks at cache-line or page
// granularity); within a rank, a bank is one contiguous block of rows.
func (h *host) at(d, rank, bank int, row uint32, line int) event {
	addr := uint64(d)*h.dimmSize + uint64(rank)*h.rankSize +
		(uint64(bank)*uint64(h.rows)+uint64(row))*rowBytes + uint64(line)*lineBytes
	return event{addr: addr, count: 1, dimm: int16(d), rank: uint8(rank), bank: uint8(bank), row: row}
}

// cacheFault: a core's private L1 or L2 logs corrected errors.
func (h *host) cacheFault(st *Stats) {
	p := h.p
	rng := h.rng
	cpu := int32(rng.IntN(p.CPUs))
	level := uint8(1 + rng.IntN(2))
	onset := h.uniformTime(h.start)
	active := float64(h.end-onset) / year.Seconds()
	n := min(max(int(math.Exp(math.Log(p.ErrorsMedian)+p.ErrorsSigma*rng.NormFloat64())*active+0.5), 1), p.MaxErrorsPerFault)
	for i := 0; i < n; i++ {
		h.events = append(h.events, event{t: onset + rng.Int64N(max(h.end-onset, 1)), count: 1, kind: kindCache, cpu: cpu, level: level})
	}
	st.CacheErrors += uint64(n)
	st.Faults["cache/permanent"]++
}

func (h *host) uniformTime(from int64) int64 { return from + h.rng.Int64N(max(h.end-from, 1)) }

// poisson draws a Poisson variate (Knuth; the means here are small).
func poisson(rng *rand.Rand, mean float64) int {
	if mean <= 0 {
		return 0
	}
	if mean > 30 {
		return max(int(mean+math.Sqrt(mean)*rng.NormFloat64()+0.5), 0)
	}
	l, k, prod := math.Exp(-mean), 0, rng.Float64()
	for prod > l {
		k++
		prod *= rng.Float64()
	}
	return k
}

// geometric draws a count >= 0 with the given mean.
func geometric(rng *rand.Rand, mean float64) int {
	if mean <= 0 {
		return 0
	}
	q := mean / (1 + mean) // P(another)
	return int(math.Log(1-rng.Float64()) / math.Log(q))
}

func appendHostLine(b []byte, name string, p *Params) []byte {
	b = append(b, `{"host":"`...)
	b = append(b, name...)
	b = append(b, `","ram_mib":`...)
	b = strconv.AppendUint(b, uint64(p.DIMMsPerHost)*uint64(p.DIMMGiB)*1024, 10)
	b = append(b, `,"cpus":`...)
	b = strconv.AppendInt(b, int64(p.CPUs), 10)
	b = append(b, `,"threads_per_core":`...)
	b = strconv.AppendInt(b, int64(p.ThreadsPerCore), 10)
	return append(b, "}\n"...)
}

// dimmLabel names DIMM d like a two-socket board's silkscreen: P0_DIMM_A1
// (socket, channel letter, slot). The memory controller is the socket.
func dimmLabel(p *Params, d int) (string, int) {
	perSocket := max((p.DIMMsPerHost+1)/2, 1)
	socket, i := d/perSocket, d%perSocket
	return fmt.Sprintf("P%d_DIMM_%c%d", socket, 'A'+i/2%26, i%2+1), socket
}

func (h *host) appendEvent(b []byte, name string, ev *event) []byte {
	b = append(b, `{"time":"`...)
	b = time.Unix(ev.t, 0).UTC().AppendFormat(b, time.RFC3339)
	b = append(b, `","host":"`...)
	b = append(b, name...)
	if ev.kind == kindCache {
		b = append(b, `","class":"cache","severity":"corrected","cpu":`...)
		b = strconv.AppendInt(b, int64(ev.cpu), 10)
		bank := 1 // Intel DCU (L1 data)
		if ev.level == 2 {
			bank = 3 // Intel MLC (L2)
		}
		b = append(b, `,"bank":`...)
		b = strconv.AppendInt(b, int64(bank), 10)
		b = append(b, `,"level":`...)
		b = strconv.AppendInt(b, int64(ev.level), 10)
		b = append(b, `,"core_bank":true`...)
	} else {
		sev := "corrected"
		if ev.kind == kindUE {
			sev = "uncorrected-recoverable"
		}
		b = append(b, `","class":"memory","severity":"`...)
		b = append(b, sev...)
		b = append(b, `","addr":"0x`...)
		b = strconv.AppendUint(b, ev.addr, 16)
		b = append(b, `","dimm":"`...)
		label := h.labels[ev.dimm]
		b = append(b, label...)
		b = append(b, `","mc":`...)
		b = strconv.AppendInt(b, int64(h.mcs[ev.dimm]), 10)
		if h.p.RowDecode {
			b = append(b, `,"row":"`...)
			b = append(b, label...)
			b = append(b, "/r"...)
			b = strconv.AppendUint(b, uint64(ev.rank), 10)
			b = append(b, "/b"...)
			b = strconv.AppendUint(b, uint64(ev.bank), 10)
			b = append(b, "/row"...)
			b = strconv.AppendUint(b, uint64(ev.row), 10)
			b = append(b, '"')
		}
	}
	if ev.count > 1 {
		b = append(b, `,"count":`...)
		b = strconv.AppendUint(b, uint64(ev.count), 10)
	}
	return append(b, "}\n"...)
}
