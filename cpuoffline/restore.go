package cpuoffline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
)

// Restore brings cpu back online (operator repair, undo of a replayed
// isolation): write 1, retrying EBUSY/EAGAIN, and verify. A CPU already
// online is left alone.
func (o *Offliner) Restore(ctx context.Context, cpu int) error {
	if cpu < 0 {
		return fmt.Errorf("restoring cpu %d: %w", cpu, ErrNotPresent)
	}
	dir := cpuDir(o.paths, "cpu"+strconv.Itoa(cpu))
	if has, err := exists(o.fsys, dir); err != nil {
		return fmt.Errorf("restoring cpu %d: %w", cpu, err)
	} else if !has {
		return fmt.Errorf("restoring cpu %d: %w", cpu, ErrNotPresent)
	}
	path := onlinePath(o.paths, cpu)
	online, err := o.readOnline(ctx, path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restoring cpu %d: %w", cpu, ErrNoOnlineFile)
	}
	if err != nil {
		return fmt.Errorf("restoring cpu %d: %w", cpu, err)
	}
	if online {
		return nil
	}
	if _, err := o.writeWithRetry(ctx, path, []byte("1\n")); err != nil {
		return fmt.Errorf("restoring cpu %d: %w", cpu, err)
	}
	online, err = o.readOnline(ctx, path)
	if err != nil {
		return fmt.Errorf("restoring cpu %d: verifying: %w", cpu, err)
	}
	if !online {
		return fmt.Errorf("restoring cpu %d: %s still reads 0: %w", cpu, path, ErrVerify)
	}
	o.opts.Log.WithField("cpu", cpu).Info("cpu back online")
	return nil
}
