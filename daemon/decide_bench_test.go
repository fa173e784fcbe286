package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
	"github.com/selfprotect/selfprotect/pageoffline"
	"github.com/selfprotect/selfprotect/store"
)

// poisoningFS is the real filesystem over a fixture tree whose
// soft_offline_page applies the poison at once, as a kernel does when the
// write returns: the deciding path runs its real file I/O, and the verify
// finds the page poisoned on its first read.
type poisoningFS struct {
	kpath.OS
	paths kpath.Paths
	mu    sync.Mutex
	// written is when the last offline write happened (the moment a prober
	// would see HWPOISON).
	written time.Time
	// atWrite, when set, runs as an offline write begins.
	atWrite func()
}

func (f *poisoningFS) WriteFile(name string, data []byte) error {
	if !strings.HasSuffix(name, "soft_offline_page") && !strings.HasSuffix(name, "hard_offline_page") {
		return f.OS.WriteFile(name, data)
	}
	at := time.Now()
	if f.atWrite != nil {
		f.atWrite()
	}
	addr, err := strconv.ParseUint(strings.TrimSpace(string(data)), 0, 64)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	kpf, err := os.OpenFile(f.paths.ProcPath("kpageflags"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer kpf.Close()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], 1<<pageoffline.KPFHWPoison)
	if _, err := kpf.WriteAt(b[:], int64(addr>>12)*8); err != nil {
		return err
	}
	f.mu.Lock()
	f.written = at
	f.mu.Unlock()
	return nil
}

func (f *poisoningFS) lastWrite() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written
}

// decidingDaemon is a daemon as Run leaves it for the deciding path: the
// store open, alerts started, the history writer running, over a machine
// tree with 1 TiB of RAM (so the page budget never refuses) whose offline
// writes poison at once; with journal, decisions go through the decision
// journal as Run sets it up.
func decidingDaemon(b *testing.B, journal bool) (*Daemon, *poisoningFS, chan<- fault.Event) {
	return decidingDaemonOn(b, journal, false)
}

// decidingDaemonOn is decidingDaemon whose budget reads the machine's own
// /proc/meminfo when realMeminfo is set and there is one (the kernel's
// work on the way to the write; its RAM must allow the decisions the
// benchmark makes).
func decidingDaemonOn(b *testing.B, journal, realMeminfo bool) (*Daemon, *poisoningFS, chan<- fault.Event) {
	b.Helper()
	root := b.TempDir()
	paths := kpath.Under(root).Resolve()
	write := func(p, data string) {
		require.NoError(b, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(b, os.WriteFile(p, []byte(data), 0o644))
	}
	if _, err := os.Stat("/proc/meminfo"); realMeminfo && err == nil {
		require.NoError(b, os.MkdirAll(filepath.Dir(paths.ProcPath("meminfo")), 0o755))
		require.NoError(b, os.Symlink("/proc/meminfo", paths.ProcPath("meminfo")))
	} else {
		write(paths.ProcPath("meminfo"), "MemTotal:       1073741824 kB\nMemFree:        1000000000 kB\nHardwareCorrupted:     0 kB\n")
	}
	write(paths.ProcPath("sys/vm/enable_soft_offline"), "1\n")
	write(paths.SysPath("devices/system/memory", "soft_offline_page"), "")
	write(paths.ProcPath("kpageflags"), "")
	// Sparse: one 8-byte entry per PFN up to 1<<22.
	require.NoError(b, os.Truncate(paths.ProcPath("kpageflags"), 8<<22))

	fsys := &poisoningFS{paths: paths}
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.SetLevel(logrus.InfoLevel) // as a production daemon logs
	state := ramDir(b)
	d, err := New(Options{Paths: paths, FS: fsys, Log: log, StateDir: state})
	require.NoError(b, err)
	d.store, err = store.Open(filepath.Join(state, "selfprotect.db"))
	require.NoError(b, err)
	if journal {
		d.openJournal()
		require.NotNil(b, d.journal)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.alerts.start(ctx, d.store)
	storeQ := make(chan fault.Event, 8192)
	done := make(chan struct{})
	go func() { defer close(done); d.storeEvents(storeQ) }()
	b.Cleanup(func() {
		close(storeQ)
		<-done
		cancel()
		d.alerts.close()
		d.store.Close()
		if d.journal != nil {
			d.journal.Close()
		}
	})
	return d, fsys, storeQ
}

// ramDir is a temporary directory in RAM when the host has one, as the
// guest's state directory is: an fsync there is nearly free, so the
// benchmark shows SQLite's CPU work, not the host disk's flush latency.
func ramDir(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "selfprotect-bench-")
	if err != nil {
		return b.TempDir()
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// BenchmarkDecide measures the daemon's side of a deciding error on the
// action worker, stage by stage as the daemon stamps them in the guest
// (decision timing): the case with its intents made durable, the reads
// before the kernel write (the page budget, the already-poisoned check),
// and the settle after it, which stores the decision with its alert and
// the events that fed it when the journal took it first. Each decision is
// a new page fed by two corrected errors, which the main loop has handed
// to the history writer just before, as the page rule does. journal is the
// daemon as it runs; store is the way without a journal (it cannot be
// opened), where the store's transaction comes before the write.
func BenchmarkDecide(b *testing.B) {
	b.Run("journal", func(b *testing.B) { benchmarkDecide(b, true) })
	b.Run("store", func(b *testing.B) { benchmarkDecide(b, false) })
}

func benchmarkDecide(b *testing.B, journal bool) {
	d, fsys, storeQ := decidingDaemon(b, journal)
	ctx := context.Background()
	var intended, prewrite, toIsolated, settled time.Duration
	base := time.Now()
	cpu0 := processCPU(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pfn := uint64(0x1000 + i)
		var evs [2]fault.Event
		for k := range evs {
			evs[k] = pageError(base, i, k, pfn)
			storeQ <- evs[k]
		}
		c := fault.Case{
			ID: fmt.Sprintf("bench-%08d-0000-4000-8000-000000000000", i), Opened: evs[1].Received,
			Rule: "page-ce", Diagnosis: fault.DiagSoftOfflinePage, Suspect: fault.Page(pfn),
			FRU: "unknown DIMM", State: fault.CaseOpen, Summary: "2 corrected memory errors on page within 24h",
			Evidence: []fault.Evidence{fault.EvidenceOf(&evs[0]), fault.EvidenceOf(&evs[1])},
		}
		now := time.Now()
		tm := newDecisionTiming(now, now, now)
		d.run(ctx, job{c: c, targets: []fault.Resource{c.Suspect}, timing: tm})
		end := time.Now()
		w := fsys.lastWrite()
		if w.Before(now) {
			b.Fatalf("decision %d: no offline write", i)
		}
		intended += tm.at[stepIntended].Sub(tm.at[stepPicked])
		prewrite += w.Sub(tm.at[stepIntended])
		toIsolated += tm.at[stepIsolated].Sub(w)
		settled += end.Sub(tm.at[stepIsolated])
	}
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	n := float64(b.N)
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
	b.ReportMetric(us(intended), "intent_durable_µs")
	b.ReportMetric(us(prewrite), "pre_write_µs")
	b.ReportMetric(us(intended+prewrite), "to_write_µs")
	b.ReportMetric(us(toIsolated), "verify_µs")
	b.ReportMetric(us(settled), "settle_µs")
	// The process's CPU time per decision: on a host shared with other
	// work, steadier than the stage times (wall clock), and with the
	// daemon pinned to one CPU in the guest it is what the stages add up to.
	b.ReportMetric(us(cpu), "cpu_µs")
}

// BenchmarkDecideCold is the deciding path as the daemon meets it: each
// decision comes after an idle spell (20 ms asleep) and a system call, so
// what it touches has left the caches. In a TCG guest that, not the work,
// is what a stage costs (a step that costs 4 µs warm costs 25-40 µs
// there), so this is the figure to compare builds by; make bench-guest
// runs it inside the 6.12 Intel guest. Each iteration is a new page fed by
// two corrected errors, the first before the spell. Reported per stage,
// the median over the decisions (µs): diagnose (the main loop's observe of
// the deciding record, through count-once and the engine to the case
// handed to the worker), intent (the journal append), budget (the
// meminfo read, the machine's own, and the check), and to_write (from the
// record to the kernel write's start). The engine's evidence log is full
// (fillEvidenceLog).
func BenchmarkDecideCold(b *testing.B) {
	d, fsys, storeQ := decidingDaemonOn(b, true, true)
	ctx := context.Background()
	base := time.Now()
	fillEvidenceLog(d, storeQ, base)
	stages := []string{"diagnose_µs", "intent_µs", "budget_µs", "to_write_µs"}
	per := make([][]float64, len(stages))
	for i := 0; i < b.N; i++ {
		pfn := uint64(0x1000 + i)
		d.observe(pageError(base, i, 0, pfn), storeQ)
		time.Sleep(20 * time.Millisecond)
		syscall.Getppid()
		start := time.Now()
		d.observe(pageError(base, i, 1, pfn), storeQ)
		diagnosed := time.Now()
		j, ok := d.jobs.pop()
		if !ok {
			b.Fatalf("decision %d: the second error opened no case", i)
		}
		d.run(ctx, j)
		w := fsys.lastWrite()
		if w.Before(start) {
			b.Fatalf("decision %d: no offline write", i)
		}
		at := j.timing.at
		for k, d := range []time.Duration{diagnosed.Sub(start), at[stepIntended].Sub(at[stepPicked]), at[stepChecked].Sub(at[stepIntended]), w.Sub(start)} {
			per[k] = append(per[k], float64(d.Nanoseconds())/1000)
		}
	}
	b.StopTimer()
	for k, name := range stages {
		b.ReportMetric(median(per[k]), name)
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDecideFootprint counts the memory pages the deciding path
// touches, from the deciding record to the kernel write's start: the
// program's code, its other file-backed pages (read-only data, the
// function tables the runtime reads) and anonymous memory (heap, stacks).
// Under TCG each page touched after an idle spell costs an emulated TLB
// refill and its translated code or data a trip back into the host's
// caches, so this count, steady on any host, is what BenchmarkDecideCold's
// times follow; natively, without an emulator's noise. It reads the
// kernel's referenced bits (cleared through /proc/self/clear_refs, summed
// from /proc/self/smaps) and reports medians over the decisions. It runs
// on one P, as the daemon pinned to one CPU does: other goroutines (the
// history writer) then run when the path lets them, not beside it.
func BenchmarkDecideFootprint(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	clearRefs, err := syscall.Open("/proc/self/clear_refs", syscall.O_WRONLY, 0)
	if err != nil {
		b.Skipf("no /proc/self/clear_refs to clear the referenced bits: %v", err)
	}
	defer syscall.Close(clearRefs)
	smaps, err := syscall.Open("/proc/self/smaps", syscall.O_RDONLY, 0)
	require.NoError(b, err)
	defer syscall.Close(smaps)
	d, fsys, storeQ := decidingDaemonOn(b, true, true)
	ctx := context.Background()
	base := time.Now()
	fillEvidenceLog(d, storeQ, base)
	// smaps is read into memory the path has touched before: the read
	// itself adds no page to the count.
	buf := make([]byte, 4<<20)
	var raw []byte
	fsys.atWrite = func() { raw = readWhole(smaps, buf) }
	kinds := []string{"code", "file", "anon"}
	per := make([][]float64, len(kinds))
	for i := 0; i < b.N; i++ {
		pfn := uint64(0x1000 + i)
		d.observe(pageError(base, i, 0, pfn), storeQ)
		time.Sleep(time.Millisecond)
		if _, err := syscall.Write(clearRefs, []byte("1")); err != nil {
			b.Skipf("clearing the referenced bits: %v", err)
		}
		raw = nil
		d.observe(pageError(base, i, 1, pfn), storeQ)
		j, ok := d.jobs.pop()
		if !ok {
			b.Fatalf("decision %d: the second error opened no case", i)
		}
		d.run(ctx, j)
		if raw == nil {
			b.Fatalf("decision %d: no offline write", i)
		}
		pages, err := referencedPages(raw)
		require.NoError(b, err)
		for k, kind := range kinds {
			per[k] = append(per[k], float64(pages[kind]))
		}
	}
	b.StopTimer()
	for k, kind := range kinds {
		b.ReportMetric(median(per[k]), kind+"_pages")
	}
}

// fillEvidenceLog has the daemon see an error on each of 1024 other pages
// within the hour before base, as a host with a slowly failing DIMM has:
// the engine's evidence log is full, and a case's evidence is found in it.
func fillEvidenceLog(d *Daemon, storeQ chan<- fault.Event, base time.Time) {
	for k := range 1024 {
		d.observe(pageErrorAt(base.Add(-time.Hour+time.Duration(k)*time.Second), uint64(0x100000+k)), storeQ)
	}
}

// pageError is the k-th corrected error of decision i, on pfn.
func pageError(base time.Time, i, k int, pfn uint64) fault.Event {
	return pageErrorAt(base.Add(time.Duration(i)*time.Second+time.Duration(k)*time.Millisecond), pfn)
}

// pageErrorAt is one corrected error on pfn, received at at.
func pageErrorAt(at time.Time, pfn uint64) fault.Event {
	ev := fault.NewEvent(fault.SourceTraceMCE, at)
	ev.Class, ev.PhysAddr, ev.AddrValid, ev.AddrLSB = fault.ClassMemory, pfn<<12|0x40, true, 12
	ev.Count = 1
	return ev
}

// readWhole reads a /proc file from its start into buf.
func readWhole(fd int, buf []byte) []byte {
	n := 0
	for n < len(buf) {
		m, err := syscall.Pread(fd, buf[n:], int64(n))
		if m <= 0 || err != nil {
			break
		}
		n += m
	}
	return buf[:n]
}

// referencedPages sums smaps' Referenced lines by kind of mapping:
// "code" (executable), "file" (other file-backed), "anon".
func referencedPages(smaps []byte) (map[string]int, error) {
	out := map[string]int{}
	kind := ""
	for line := range strings.Lines(string(smaps)) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-"):
			// "start-end perms offset dev inode [path]"
			switch {
			case strings.Contains(f[1], "x"):
				kind = "code"
			case f[4] != "0":
				kind = "file"
			default:
				kind = "anon"
			}
		case len(f) == 3 && f[0] == "Referenced:":
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				return nil, fmt.Errorf("smaps: %q: %w", line, err)
			}
			out[kind] += kb / 4
		}
	}
	if kind == "" {
		return nil, errors.New("smaps: no mapping")
	}
	return out, nil
}
