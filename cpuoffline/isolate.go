package cpuoffline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

// Violation names for safety refusals, shared with the policy's wording.
const (
	ViolationCPU0         = "cpu0"
	ViolationNoOnlineFile = "no-online-file"
)

// Isolate takes the CPU named by r ("cpu:N") offline: check, (dry-run stop),
// write 0 to cpuN/online, retry EBUSY/EAGAIN with backoff, then re-read the
// file to verify. cpu0 and CPUs without an online file are refused before
// anything is written. Finding the CPU already offline gives
// OutcomeIsolatedByOther: whether it was us is the caller's store's call.
func (o *Offliner) Isolate(ctx context.Context, r fault.Resource, dryRun bool) fault.Action {
	a := fault.Action{Time: o.opts.Now(), Resource: r, Kind: Kind}
	done := func(out fault.Outcome, format string, args ...any) fault.Action {
		a.Outcome = out
		a.Detail = fmt.Sprintf(format, args...)
		o.opts.Log.WithFields(map[string]any{
			"resource": string(r), "outcome": string(out), "attempts": a.Attempts,
		}).Info(a.Detail)
		return a
	}

	cpu, err := r.CPUNumber()
	if err != nil {
		return done(fault.OutcomeFailed, "cannot offline %s: %v", r, err)
	}
	if cpu == 0 {
		a.Violations = []string{ViolationCPU0}
		return done(fault.OutcomeRefused, "refused: cpu0 is never offlined (violates %s)", ViolationCPU0)
	}
	dir := cpuDir(o.paths, "cpu"+strconv.Itoa(cpu))
	if has, err := exists(o.fsys, dir); err != nil {
		return done(fault.OutcomeFailed, "cpu %d: %v", cpu, err)
	} else if !has {
		return done(fault.OutcomeNotPresent, "cpu %d is not present (%s missing)", cpu, dir)
	}
	path := onlinePath(o.paths, cpu)
	state, err := o.readOnline(ctx, path)
	if errors.Is(err, fs.ErrNotExist) {
		a.Violations = []string{ViolationNoOnlineFile}
		return done(fault.OutcomeRefused, "refused: cpu %d has no online file, the kernel does not let it go offline (violates %s)", cpu, ViolationNoOnlineFile)
	}
	if err != nil {
		return done(fault.OutcomeFailed, "cpu %d: %v", cpu, err)
	}
	if !state {
		return done(fault.OutcomeIsolatedByOther, "cpu %d was already offline before we wrote anything (%s reads 0)", cpu, path)
	}
	if dryRun {
		return done(fault.OutcomeDryRun, "dry-run: would write 0 to %s", path)
	}

	attempts, err := o.writeWithRetry(ctx, path, []byte("0\n"))
	a.Attempts = attempts
	if err != nil {
		return done(fault.OutcomeFailed, "cpu %d offline failed after %d attempt(s): %v", cpu, attempts, err)
	}
	state, err = o.readOnline(ctx, path)
	if err != nil {
		return done(fault.OutcomeFailed, "cpu %d: write accepted but verify failed: %v", cpu, err)
	}
	if state {
		return done(fault.OutcomeFailed, "cpu %d: write accepted but %s still reads 1", cpu, path)
	}
	a.Undo = "echo 1 > " + path
	return done(fault.OutcomeIsolated, "cpu %d offline (wrote 0 to %s in %d attempt(s), verified)", cpu, path, attempts)
}

// readOnline returns true for "1", false for "0". sysfs never reads
// empty, but a plain-file fake of it (the simulator) does between a
// writer's truncate and its write, or after a writer was killed in
// between until the fake restores it: an empty read is retried briefly.
func (o *Offliner) readOnline(ctx context.Context, path string) (bool, error) {
	data, err := o.fsys.ReadFile(path)
	for delay, tries := 10*time.Millisecond, 0; err == nil && len(data) == 0 && tries < 8; tries++ {
		if err := o.opts.Sleep(ctx, delay); err != nil {
			return false, fmt.Errorf("reading %s: empty, then %w", path, err)
		}
		delay = kpath.NextDelay(delay)
		data, err = o.fsys.ReadFile(path)
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	switch strings.TrimSpace(string(data)) {
	case "1":
		return true, nil
	case "0":
		return false, nil
	}
	return false, fmt.Errorf("reading %s: unexpected content %q", path, data)
}
