package daemon

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/selfprotect/selfprotect/store"
)

// writes keeps the record of what was done when the store cannot take it
// (full disk, damaged file): the writes wait in memory, in order, and are
// retried until they land. While any wait, status is degraded.
type writes struct {
	mu   sync.Mutex
	held []heldWrite
	// lastErr is read by status without mu: a retry holds mu across I/O.
	lastErr atomic.Pointer[string]
	// failures counts failed store writes since start (metrics).
	failures atomic.Uint64
	// eventsFailing is set while history batches fail to store.
	eventsFailing atomic.Bool
	// heldN mirrors len(held) for lock-free readers (status, metrics).
	heldN atomic.Int64
}

type heldWrite struct {
	what string
	fn   func() error
}

// persist runs one store write. When it fails, or when earlier writes are
// still held (a later record must not land before an earlier one: an
// outcome before its intent), it is held for retryWrites. It reports
// whether the write is in the store now.
func (d *Daemon) persist(what string, fn func() error) bool {
	w := &d.writes
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.held) == 0 {
		err := fn()
		if err == nil {
			return true
		}
		if dropWrite(err) {
			d.log.WithError(err).Error(what + ": not stored")
			return false
		}
		w.failures.Add(1)
		msg := err.Error()
		w.lastErr.Store(&msg)
		d.log.WithError(err).Error(what + ": store write failed; kept in memory and retried")
	}
	w.held = append(w.held, heldWrite{what: what, fn: fn})
	w.heldN.Store(int64(len(w.held)))
	return false
}

// dropWrite tells errors that retrying cannot fix (the write names a case
// the store does not have) from those of the file or the disk.
func dropWrite(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrReadOnly)
}

// retryWrites writes what is held, oldest first, stopping at the first
// failure. It runs on the action worker.
func (d *Daemon) retryWrites() {
	w := &d.writes
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.held) == 0 {
		return
	}
	done := 0
	for _, h := range w.held {
		err := h.fn()
		if err != nil && !dropWrite(err) {
			w.failures.Add(1)
			msg := err.Error()
			w.lastErr.Store(&msg)
			break
		}
		if err != nil {
			d.log.WithError(err).Error(h.what + ": not stored")
		}
		done++
	}
	w.held = append(w.held[:0], w.held[done:]...)
	w.heldN.Store(int64(len(w.held)))
	if len(w.held) == 0 {
		d.log.WithField("records", done).Warn("the store takes writes again: every held record is written")
	}
}

// storeProblem is status's sentence while writes are held, "" otherwise.
func (d *Daemon) storeProblem() string {
	n := d.writes.heldN.Load()
	if n == 0 {
		if d.writes.eventsFailing.Load() {
			return "store writes failing: error history not stored (see the log)"
		}
		return ""
	}
	last := ""
	if p := d.writes.lastErr.Load(); p != nil {
		last = *p
	}
	return fmt.Sprintf("store writes failing: %d records held in memory and retried (last error: %s)", n, last)
}
