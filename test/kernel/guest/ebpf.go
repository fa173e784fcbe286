package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/ebpfsource"
	"github.com/selfprotect/selfprotect/edac"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/mce"
	"github.com/selfprotect/selfprotect/tracefs"
)

// ebpfStormPage is where the storm lands: any physical address will do,
// since mce-inject's sw flag only logs the record.
const (
	ebpfSinglePage = 0x2799040
	ebpfStormPage  = 0x3a5b000
	// ebpfFullRingPage is the page of the full-ring phase.
	ebpfFullRingPage = 0x4c7d000
	// ebpfLongStormPage is the page of the long-storm phase.
	ebpfLongStormPage = 0x5e9f000
)

// ebpfWait bounds every wait for events; a record that takes longer is a
// failure the host sees, not a hang.
const ebpfWait = 20 * time.Second

var ebpfDecoders = map[string]tracefs.Decoder{
	"mce/mce_record": mce.TraceDecoder,
	"ras/mc_event":   edac.TraceDecoder,
}

// collector drains a source's events in the background.
type collector struct {
	ch   chan fault.Event
	got  chan fault.Event
	done chan error
}

func collect(ctx context.Context, src fault.EventSource) *collector {
	c := &collector{ch: make(chan fault.Event, 1024), got: make(chan fault.Event, 1<<16), done: make(chan error, 1)}
	go func() { c.done <- src.Run(ctx, c.ch) }()
	go func() {
		for ev := range c.ch {
			c.got <- ev
		}
	}()
	return c
}

// next waits for the next event matching keep.
func (c *collector) next(keep func(fault.Event) bool, timeout time.Duration) (fault.Event, error) {
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-c.got:
			if keep(ev) {
				return ev, nil
			}
		case <-deadline:
			return fault.Event{}, fmt.Errorf("no event within %s", timeout)
		}
	}
}

// cmdEBPFCheck runs the eBPF source beside a tracefs instance on the same
// tracepoints, injects one corrected memory error and one corrected cache
// error, and reports whether the two sources made identical events of them
// (all but Source and Received). Then it injects a storm of N corrected
// errors on one page and reports the probes' counters and the counts the
// eBPF events carried, which must add up to every record the probe saw.
//
// With UE_ADDR (a page the kernel may poison) it also injects an
// uncorrected memory error there, compares its events too and reports the
// ras:memory_failure_event the kernel's own handling fires.
//
// Usage: ebpf-check [N [UE_ADDR]]   (N defaults to 200)
func cmdEBPFCheck(e env, args []string) (map[string]any, error) {
	storm := 200
	if len(args) > 0 {
		n, err := parseInt("N", args[0])
		if err != nil {
			return nil, err
		}
		storm = n
	}
	var ueAddr uint64
	if len(args) > 1 {
		a, err := parseUint("UE_ADDR", args[1])
		if err != nil {
			return nil, err
		}
		ueAddr = a
	}
	vendor, err := e.cpuVendor()
	if err != nil {
		return nil, err
	}
	data := map[string]any{"vendor": vendor}

	inst, err := tracefs.OpenInstance(e.paths, tracefs.Options{Name: "ebpfcheck", Events: tracefs.DefaultEvents()}, nil)
	if err != nil {
		return data, fmt.Errorf("tracefs instance: %w", err)
	}
	defer inst.Close()
	trace := tracefs.NewSource(inst, ebpfDecoders, nil, nil)

	rssBefore := e.vmRSSKB()
	opened := time.Now()
	src, err := ebpfsource.Open(ebpfsource.Config{
		Paths: e.paths, Decoders: ebpfDecoders,
		// Four records of a key per 10 s are sent, the rest counted: the
		// storm aggregates however slowly the emulated guest injects.
		KeyLimit: 4, KeyWindow: 10 * time.Second,
	})
	if err != nil {
		data["not_supported"] = errors.Is(err, ebpfsource.ErrNotSupported)
		return data, fmt.Errorf("opening the eBPF source: %w", err)
	}
	data["open_ms"] = time.Since(opened).Milliseconds()
	data["rss_kb_before_open"] = rssBefore
	data["rss_kb_after_open"] = e.vmRSSKB()
	data["attached"] = strings.Join(src.Attached(), ",")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bpf := collect(ctx, src)
	tr := collect(ctx, trace)

	// 1. One memory and one cache error: identical events from both paths.
	mem, err := memRecord(vendor, ebpfSinglePage, false)
	if err != nil {
		return data, err
	}
	cache := mceRecord{bank: 1, status: statusCacheCE}
	injections := []struct {
		name string
		cpu  int
		rec  mceRecord
	}{{"memory", 1, mem}, {"cache", 2, cache}}
	if ueAddr != 0 {
		// The kernel acts on an uncorrected error with a usable address
		// itself (memory_failure), which fires ras:memory_failure_event.
		ue, err := memRecord(vendor, ueAddr, true)
		if err != nil {
			return data, err
		}
		injections = append(injections, struct {
			name string
			cpu  int
			rec  mceRecord
		}{"uncorrected", 1, ue})
	}
	equal := 0
	for _, in := range injections {
		start := time.Now()
		if _, err := e.inject(in.cpu, in.rec, nil); err != nil {
			return data, err
		}
		injected := time.Now()
		match := func(ev fault.Event) bool {
			return ev.Status == in.rec.status && ev.CPU == in.cpu && ev.Bank == in.rec.bank
		}
		b, err := bpf.next(match, ebpfWait)
		if err != nil {
			return data, fmt.Errorf("%s error through eBPF: %w", in.name, err)
		}
		// From the bank write's return: the kernel may log the record before
		// it, so this bounds the delivery delay from above, plus the write.
		data[in.name+"_inject_ms"] = float64(injected.Sub(start).Microseconds()) / 1000
		data[in.name+"_ebpf_ms"] = float64(time.Since(injected).Microseconds()) / 1000
		t, err := tr.next(match, ebpfWait)
		if err != nil {
			return data, fmt.Errorf("%s error through tracefs: %w", in.name, err)
		}
		if b.Source != fault.SourceEBPF {
			return data, fmt.Errorf("%s error: eBPF event has source %q", in.name, b.Source)
		}
		b.Source, b.Received = t.Source, t.Received
		if !reflect.DeepEqual(b, t) {
			return data, fmt.Errorf("%s error: eBPF and tracefs events differ:\n ebpf    %+v\n tracefs %+v", in.name, b, t)
		}
		data[in.name+"_event"] = t.String()
		equal++
	}
	data["identical_events"] = equal
	if ueAddr != 0 {
		// Whether the kernel acts on the injected uncorrected error
		// depends on the CPU model; a hard offline of the page always runs
		// memory_failure (on a page already poisoned, 6.1 fires no event,
		// but then the error's own handling did).
		err := writeOnce(e.paths.SysPath("devices", "system", "memory", "hard_offline_page"), hex(ueAddr&^(fault.PageSize-1))+"\n")
		data["hard_offline_error"] = fmt.Sprint(err)
		// Nobody decodes memory_failure_event yet: the probe's counters
		// show it arrived.
		var mf ebpfsource.ProbeStats
		for deadline := time.Now().Add(ebpfWait); ; time.Sleep(100 * time.Millisecond) {
			st, err := src.Stats()
			if err != nil {
				return data, err
			}
			mf = st.Probes["ras/memory_failure_event"]
			if mf.Seen > 0 || time.Now().After(deadline) {
				break
			}
		}
		data["mf_seen"] = mf.Seen
		data["mf_sent"] = mf.Sent
	}

	// 2. A storm on one page: every record sent or counted.
	before, err := src.Stats()
	if err != nil {
		return data, err
	}
	inj, err := e.openInjector()
	if err != nil {
		return data, err
	}
	storming, err := memRecord(vendor, ebpfStormPage, false)
	if err != nil {
		inj.close()
		return data, err
	}
	err = inj.injectN(1, storm, storming)
	inj.close()
	if err != nil {
		return data, err
	}
	onPage := func(ev fault.Event) bool { return ev.AddrValid && ev.PFN() == ebpfStormPage/fault.PageSize }
	var bpfSum, bpfEvents, trSum uint64
	after, err := settle(src, before.Probes["mce/mce_record"].Seen, func() uint64 {
		drain(bpf.got, onPage, &bpfSum, &bpfEvents)
		drain(tr.got, onPage, &trSum, nil)
		return bpfSum
	})
	if err != nil {
		return data, err
	}
	b := before.Probes["mce/mce_record"]
	data["storm_injected"] = storm
	data["storm_seen"] = after.Seen - b.Seen
	data["storm_sent"] = after.Sent - b.Sent
	data["storm_aggregated"] = after.Aggregated - b.Aggregated
	data["storm_ringbuf_full"] = after.RingbufFull - b.RingbufFull
	data["storm_lost"] = after.Lost - b.Lost
	data["storm_ebpf_count"] = bpfSum
	data["storm_ebpf_events"] = bpfEvents

	// Close must interrupt Run at once.
	closed := time.Now()
	if err := src.Close(); err != nil {
		return data, fmt.Errorf("closing the eBPF source: %w", err)
	}
	select {
	case err := <-bpf.done:
		if err != nil {
			return data, fmt.Errorf("eBPF Run after Close: %w", err)
		}
		data["close_ms"] = time.Since(closed).Milliseconds()
	case <-time.After(5 * time.Second):
		return data, errors.New("eBPF Run still blocked 5 s after Close")
	}
	// 3. A full ring buffer: a record that finds no room is counted in its
	// key's map entry and reported by a sweep, never lost. Nobody reads
	// while the storm lands, the ring holds one page, and no rate limit
	// applies, so every record past the first page's worth hits a full ring.
	if err := e.fullRing(data, vendor); err != nil {
		return data, err
	}
	// 4. A storm over several key windows: past its first window it is
	// counted whole, with no record sent.
	if err := e.longStorm(data, vendor); err != nil {
		return data, err
	}

	// tracefs gets a moment to flush what it holds, then reports its total.
	time.Sleep(time.Second)
	drain(tr.got, onPage, &trSum, nil)
	cancel()
	<-tr.done
	drain(tr.got, onPage, &trSum, nil)
	ts := trace.Stats()
	data["storm_tracefs_count"] = trSum
	data["tracefs_missed"] = ts.Missed + ts.LostUnknown
	return data, nil
}

// ebpfFullRing is how many errors phase 3 injects with nobody reading.
const ebpfFullRing = 400

func (e env) fullRing(data map[string]any, vendor string) error {
	src, err := ebpfsource.Open(ebpfsource.Config{
		Paths: e.paths, Decoders: ebpfDecoders,
		KeyLimit: math.MaxUint32, RingBytes: 4096, Backstop: 500 * time.Millisecond,
	})
	if err != nil {
		return fmt.Errorf("opening the eBPF source with a one-page ring: %w", err)
	}
	defer src.Close()
	rec, err := memRecord(vendor, ebpfFullRingPage, false)
	if err != nil {
		return err
	}
	inj, err := e.openInjector()
	if err != nil {
		return err
	}
	err = inj.injectN(1, ebpfFullRing, rec)
	inj.close()
	if err != nil {
		return err
	}
	// The kernel logs injected records from a kworker after the writes
	// return: let the probe see them all before anyone reads the ring.
	if _, err := settle(src, 0, nil); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := collect(ctx, src)
	onPage := func(ev fault.Event) bool { return ev.AddrValid && ev.PFN() == ebpfFullRingPage/fault.PageSize }
	var sum, events uint64
	ps, err := settle(src, 0, func() uint64 {
		drain(c.got, onPage, &sum, &events)
		return sum
	})
	if err != nil {
		return err
	}
	data["full_injected"] = ebpfFullRing
	data["full_seen"] = ps.Seen
	data["full_sent"] = ps.Sent
	data["full_aggregated"] = ps.Aggregated
	data["full_ringbuf_full"] = ps.RingbufFull
	data["full_lost"] = ps.Lost
	data["full_ebpf_count"] = sum
	data["full_ebpf_events"] = events
	return nil
}

// ebpfLongStorm is how many errors phase 4 injects on one page: at the
// 500-1 000 records a second an emulated guest's tracepoint passes, several
// of the daemon's 1 s key windows.
const ebpfLongStorm = 5000

// longStorm runs the daemon's key limit and window on a storm that outlasts
// one window: the first window sends KeyLimit records and counts the rest;
// while the storm goes on nothing more is sent.
func (e env) longStorm(data map[string]any, vendor string) error {
	src, err := ebpfsource.Open(ebpfsource.Config{Paths: e.paths, Decoders: ebpfDecoders})
	if err != nil {
		return fmt.Errorf("opening the eBPF source with the default key limit: %w", err)
	}
	defer src.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := collect(ctx, src)
	rec, err := memRecord(vendor, ebpfLongStormPage, false)
	if err != nil {
		return err
	}
	inj, err := e.openInjector()
	if err != nil {
		return err
	}
	start := time.Now()
	err = inj.injectN(1, ebpfLongStorm, rec)
	inj.close()
	if err != nil {
		return err
	}
	data["long_inject_ms"] = time.Since(start).Milliseconds()
	onPage := func(ev fault.Event) bool { return ev.AddrValid && ev.PFN() == ebpfLongStormPage/fault.PageSize }
	var sum, events uint64
	ps, err := settle(src, 0, func() uint64 {
		drain(c.got, onPage, &sum, &events)
		return sum
	})
	if err != nil {
		return err
	}
	st, err := src.Stats()
	if err != nil {
		return err
	}
	data["long_injected"] = ebpfLongStorm
	data["long_key_limit"] = ebpfsource.DefaultKeyLimit
	data["long_seen"] = ps.Seen
	data["long_sent"] = ps.Sent
	data["long_aggregated"] = ps.Aggregated
	data["long_lost"] = ps.Lost
	data["long_notices"] = st.Notices
	data["long_ebpf_count"] = sum
	data["long_ebpf_events"] = events
	return nil
}

// ebpfQuiet is how long the probe's counters and the events must stay
// still before a storm counts as over: mce-inject only queues a record, and
// a kworker logs it later, so records keep arriving after the last write.
const ebpfQuiet = 1500 * time.Millisecond

// settle waits until the mce_record probe's counters and the count the
// events carried (what delivered returns) have stopped moving and agree
// (the probe having seen base records before), or ebpfWait passes, and
// returns the probe's counters then. A nil delivered waits on the
// counters alone.
func settle(src *ebpfsource.Source, base uint64, delivered func() uint64) (ebpfsource.ProbeStats, error) {
	countless := delivered == nil
	if countless {
		delivered = func() uint64 { return 0 }
	}
	var last ebpfsource.ProbeStats
	var lastSum uint64
	changed := time.Now()
	for deadline := changed.Add(ebpfWait); ; {
		st, err := src.Stats()
		if err != nil {
			return last, err
		}
		ps, sum := st.Probes["mce/mce_record"], delivered()
		now := time.Now()
		if ps != last || sum != lastSum {
			last, lastSum, changed = ps, sum, now
		}
		if ps.Seen > base && (countless || sum >= ps.Seen-base) && now.Sub(changed) >= ebpfQuiet || now.After(deadline) {
			return ps, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func drain(ch chan fault.Event, keep func(fault.Event) bool, sum, events *uint64) {
	for {
		select {
		case ev := <-ch:
			if keep(ev) {
				*sum += uint64(ev.Count)
				if events != nil {
					*events++
				}
			}
		default:
			return
		}
	}
}

// vmRSSKB is this process's resident set in kB, 0 when unreadable.
func (e env) vmRSSKB() int {
	data, err := os.ReadFile(e.paths.ProcPath("self", "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb
		}
	}
	return 0
}
