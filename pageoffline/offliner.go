package pageoffline

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

// Action kinds this package records.
const (
	KindSoft = "soft-offline"
	KindHard = "hard-offline"
)

// Options tune an Offliner. Zero values take the defaults.
type Options struct {
	// Retries after the first write when it fails with EAGAIN (default 3).
	// Negative means no retry.
	Retries int
	// Backoff before the first write retry, doubling (default 100ms).
	Backoff time.Duration
	// VerifyReads is how many times kpageflags is read after a successful
	// write before giving up on seeing HWPOISON (default 5): the poison can
	// land a little after the write returns (a simulator applies it from
	// another process).
	VerifyReads int
	// VerifyBackoff is the wait before the second verify read, doubling
	// (default 10ms; five reads span 150ms, ample for a simulator polling
	// every few milliseconds).
	VerifyBackoff time.Duration
	// Sleep waits d or until ctx ends (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// Now stamps actions (default time.Now).
	Now func() time.Time
	// Log receives one line per retry and outcome (default: discarded).
	Log logrus.FieldLogger
}

func (o Options) withDefaults() Options {
	if o.Retries == 0 {
		o.Retries = 3
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	if o.Backoff <= 0 {
		o.Backoff = 100 * time.Millisecond
	}
	if o.VerifyReads <= 0 {
		o.VerifyReads = 5
	}
	if o.VerifyBackoff <= 0 {
		o.VerifyBackoff = 10 * time.Millisecond
	}
	if o.Sleep == nil {
		o.Sleep = kpath.SleepContext
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Log = l
	}
	return o
}

// Offliner retires pages. Isolate soft-offlines (fault.Actuator);
// HardOffline poisons at once. Safe for concurrent use as long as the
// injected functions are.
type Offliner struct {
	paths kpath.Paths
	fsys  kpath.FS
	opts  Options
	// The files used on the way to every write, and the offline files
	// written, kept open where the FS can (kpath.Kept): each open is a
	// path lookup, 200-400 µs under emulation, and there were four of
	// them before the write returned. softEnabled is read only to explain
	// a refused soft offline.
	meminfo, kpageflags, softEnabled *kpath.Kept
	softOffline, hardOffline         *kpath.Kept
}

var _ fault.Actuator = (*Offliner)(nil)

// New returns an Offliner working under p through fsys.
func New(p kpath.Paths, fsys kpath.FS, opts Options) *Offliner {
	return &Offliner{paths: p, fsys: fsys, opts: opts.withDefaults(),
		meminfo:     kpath.KeepWhole(fsys, p.ProcPath("meminfo")),
		kpageflags:  kpath.Keep(fsys, p.ProcPath("kpageflags")),
		softEnabled: kpath.KeepWhole(fsys, p.ProcPath("sys/vm/enable_soft_offline")),
		softOffline: kpath.KeepForWrite(fsys, p.SysPath("devices/system/memory", softMode().file)),
		hardOffline: kpath.KeepForWrite(fsys, p.SysPath("devices/system/memory", hardMode().file)),
	}
}

// Open opens the files kept for the way to a write now, so that the first
// isolation does not pay for their path lookups; a file that cannot be
// opened is left to its first use, which reports why. In dry-run nothing
// is written, and the offline files stay closed.
func (o *Offliner) Open(dryRun bool) {
	kept := []*kpath.Kept{o.meminfo, o.kpageflags}
	if !dryRun {
		kept = append(kept, o.softOffline, o.hardOffline)
	}
	for _, k := range kept {
		_ = k.Open()
	}
}

// MemInfo reads meminfo (the page budget's reading: HardwareCorrupted
// counts pages whoever poisoned them).
func (o *Offliner) MemInfo() (MemInfo, error) {
	data, err := o.meminfo.ReadFile()
	return parseMemInfoRead(o.meminfo.Name(), data, err)
}

func (o *Offliner) pageFlags(pfn uint64) (PageFlags, error) {
	return readPageFlags(o.kpageflags.Name(), o.kpageflags.ReadAt, pfn)
}

// Close releases the files the offliner keeps open.
func (o *Offliner) Close() error {
	return errors.Join(o.meminfo.Close(), o.kpageflags.Close(), o.softEnabled.Close(), o.softOffline.Close(), o.hardOffline.Close())
}
