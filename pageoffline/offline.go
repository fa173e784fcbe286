package pageoffline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"time"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// mode is what differs between soft and hard offline.
type mode struct {
	kind string
	file string // under <sys>/devices/system/memory
	hard bool
}

func softMode() mode { return mode{kind: KindSoft, file: "soft_offline_page"} }
func hardMode() mode { return mode{kind: KindHard, file: "hard_offline_page", hard: true} }

// offlineFile is the kept file m writes.
func (o *Offliner) offlineFile(m mode) *kpath.Kept {
	if m.hard {
		return o.hardOffline
	}
	return o.softOffline
}

// Isolate soft-offlines the page named by r ("page:0xPFN"): the kernel
// migrates its contents to a new frame and poisons the old one. A page
// found already poisoned gives OutcomeIsolatedByOther without a write.
func (o *Offliner) Isolate(ctx context.Context, r fault.Resource, dryRun bool) fault.Action {
	return o.offline(ctx, r, dryRun, softMode(), nil)
}

// MemInfoRead is a /proc/meminfo reading and its error.
type MemInfoRead struct {
	MemInfo MemInfo
	Err     error
}

// IsolateAfter is Isolate for a caller that read /proc/meminfo just
// before (the daemon's page budget does): the HardwareCorrupted note
// starts from that reading, so nothing but the checks that decide whether
// to write stands between the decision and the kernel write.
func (o *Offliner) IsolateAfter(ctx context.Context, r fault.Resource, dryRun bool, before MemInfoRead) fault.Action {
	return o.offline(ctx, r, dryRun, softMode(), &before)
}

// HardOffline poisons the page at once (for uncorrected errors): processes
// mapping it are killed. Same checks and verification as Isolate; EHWPOISON
// from the kernel means someone poisoned it first.
func (o *Offliner) HardOffline(ctx context.Context, r fault.Resource, dryRun bool) fault.Action {
	return o.offline(ctx, r, dryRun, hardMode(), nil)
}

// HardOfflineAfter is HardOffline with the caller's meminfo reading, as
// IsolateAfter.
func (o *Offliner) HardOfflineAfter(ctx context.Context, r fault.Resource, dryRun bool, before MemInfoRead) fault.Action {
	return o.offline(ctx, r, dryRun, hardMode(), &before)
}

// report accumulates an Action and its Detail parts, and when the kernel
// write began and returned (zero when there was none): the outcome's log
// line splits the time around it, which the latency bench reads.
type report struct {
	a              fault.Action
	notes          []string
	writing, wrote time.Time
}

func (rep *report) note(format string, args ...any) {
	rep.notes = append(rep.notes, fmt.Sprintf(format, args...))
}

func (o *Offliner) finish(rep *report, out fault.Outcome, format string, args ...any) fault.Action {
	rep.a.Outcome = out
	rep.a.Detail = strings.Join(append([]string{fmt.Sprintf(format, args...)}, rep.notes...), "; ")
	fields := map[string]any{
		"resource": string(rep.a.Resource), "kind": rep.a.Kind, "outcome": string(out), "attempts": rep.a.Attempts,
	}
	if !rep.writing.IsZero() && !rep.wrote.IsZero() {
		fields["before_write_ms"] = millis(rep.writing.Sub(rep.a.Time))
		fields["write_ms"] = millis(rep.wrote.Sub(rep.writing))
		fields["after_write_ms"] = millis(o.opts.Now().Sub(rep.wrote))
	}
	o.opts.Log.WithFields(fields).Info(rep.a.Detail)
	return rep.a
}

func (o *Offliner) offline(ctx context.Context, r fault.Resource, dryRun bool, m mode, before *MemInfoRead) fault.Action {
	rep := &report{a: fault.Action{Time: o.opts.Now(), Resource: r, Kind: m.kind}}
	pfn, err := r.PFN()
	if err != nil {
		return o.finish(rep, fault.OutcomeFailed, "cannot %s %s: %v", m.kind, r, err)
	}
	flags, err := o.pageFlags(pfn)
	if errors.Is(err, ErrPFNOutOfRange) {
		return o.finish(rep, fault.OutcomeNotPresent, "pfn %#x: %v", pfn, err)
	}
	if err != nil {
		return o.finish(rep, fault.OutcomeFailed, "pfn %#x: checking before writing: %v", pfn, err)
	}
	if flags.NoPage() {
		return o.finish(rep, fault.OutcomeNotPresent, "pfn %#x has no page behind it (kpageflags %s)", pfn, flags)
	}
	noteHuge(rep, flags, m)
	if flags.HWPoison() {
		return o.finish(rep, fault.OutcomeIsolatedByOther, "pfn %#x was already poisoned before we wrote anything (kpageflags %s)", pfn, flags)
	}

	file := o.offlineFile(m)
	path := file.Name()
	// What the kernel parses ("0x1234000\n"), built without fmt (see
	// fault.Hex): this is on the way to the write.
	addr := fault.Hex(pfn << pageShift)
	line := []byte(addr + "\n")
	if dryRun {
		return o.finish(rep, fault.OutcomeDryRun, "dry-run: would write %s to %s (pfn %#x)", addr, path, pfn)
	}

	if before == nil {
		mi, err := o.MemInfo()
		before = &MemInfoRead{MemInfo: mi, Err: err}
	}
	rep.writing = o.opts.Now()
	attempts, err := o.writeWithRetry(ctx, file, line)
	rep.wrote = o.opts.Now()
	rep.a.Attempts = attempts
	if err != nil {
		v := classify(err)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			v.why = "stopped"
		}
		// vm.enable_soft_offline=0 is honoured by the kernel, which refuses
		// the write and changes nothing: read it only to say so, not
		// before every write (a system call on the way to each isolation,
		// and a failed open per write on kernels before 6.11, which lack
		// it).
		if errors.Is(err, syscall.EOPNOTSUPP) && !m.hard {
			if off, path := o.softOfflineDisabled(); off {
				return o.finish(rep, fault.OutcomeFailed, "soft offline is disabled by vm.enable_soft_offline=0 (%s): the kernel refused the write (EOPNOTSUPP)", path)
			}
		}
		return o.finish(rep, v.outcome, "%s of pfn %#x: %s after %d attempt(s): %v", m.kind, pfn, v.why, attempts, err)
	}

	after, reads, err := o.verifyPoisoned(ctx, pfn)
	o.noteMemInfo(rep, before.MemInfo, before.Err)
	if err != nil {
		return o.finish(rep, fault.OutcomeFailed, "%s of pfn %#x: write accepted but verify failed after %d read(s): %v", m.kind, pfn, reads, err)
	}
	if !after.HWPoison() {
		return o.finish(rep, fault.OutcomeFailed, "%s of pfn %#x: write accepted but kpageflags bit 19 (HWPOISON) still clear after %d read(s) (flags %s)", m.kind, pfn, reads, after)
	}
	rep.a.Undo = o.undo(pfn)
	rep.note("undo needs the hwpoison-inject module; on a production kernel only a reboot returns the page")
	return o.finish(rep, fault.OutcomeIsolated, "%s of pfn %#x done: wrote %s to %s in %d attempt(s), HWPOISON set after %d read(s)",
		m.kind, pfn, addr, path, attempts, reads)
}

// softOfflineDisabled reads vm.enable_soft_offline (6.11+). A missing file
// means an older kernel where soft offline is always on.
func (o *Offliner) softOfflineDisabled() (bool, string) {
	path := o.softEnabled.Name()
	data, err := o.softEnabled.ReadFile()
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			o.opts.Log.WithError(err).Warn("cannot read vm.enable_soft_offline, trying anyway")
		}
		return false, path
	}
	return strings.TrimSpace(string(data)) == "0", path
}

func noteHuge(rep *report, flags PageFlags, m mode) {
	switch {
	case flags.Huge() && m.kind == KindSoft:
		rep.note("hugetlb page: the kernel migrates or dissolves the whole huge page first")
	case flags.Huge():
		rep.note("hugetlb page: poisoning affects the whole huge page")
	case flags.THP():
		rep.note("transparent huge page: the kernel splits it first")
	}
}

// noteMemInfo adds "HardwareCorrupted 0 kB → 4 kB" when both reads work.
func (o *Offliner) noteMemInfo(rep *report, before MemInfo, beforeErr error) {
	after, err := o.MemInfo()
	switch {
	case beforeErr != nil || err != nil:
		rep.note("HardwareCorrupted unavailable: %v", errors.Join(beforeErr, err))
	case !before.HasHardwareCorrupted || !after.HasHardwareCorrupted:
		rep.note("meminfo has no HardwareCorrupted line")
	default:
		rep.note("HardwareCorrupted %d kB → %d kB", before.HardwareCorruptedKB, after.HardwareCorruptedKB)
	}
}

// undo is the test-kernel command that clears the poison. unpoison-pfn
// takes a PFN, unlike the offline files.
func (o *Offliner) undo(pfn uint64) string {
	return fmt.Sprintf("echo %#x > %s  # needs hwpoison-inject; production kernels: reboot",
		pfn, o.paths.DebugPath("hwpoison", "unpoison-pfn"))
}
