package cpuoffline

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

// Kind is the fault.Action kind this actuator records.
const Kind = "cpu-offline"

// Sentinel errors Restore returns, for callers that act on them.
var (
	ErrNotPresent   = errors.New("cpu not present")
	ErrNoOnlineFile = errors.New("cpu has no online file (cannot be hot-plugged)")
	ErrVerify       = errors.New("online file does not show the written state")
)

// Options tune an Offliner. Zero values take the defaults.
type Options struct {
	// Retries after the first write when it fails with EBUSY or EAGAIN
	// (default 3). Negative means no retry.
	Retries int
	// Backoff before the first retry, doubling each time (default 100ms).
	Backoff time.Duration
	// Sleep waits d or until ctx ends (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// Now stamps actions (default time.Now).
	Now func() time.Time
	// Log receives one line per attempt and outcome (default: discarded).
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

// Offliner hot-offlines CPUs. It is safe for concurrent use as long as the
// injected functions are.
type Offliner struct {
	paths kpath.Paths
	fsys  kpath.FS
	opts  Options
}

var _ fault.Actuator = (*Offliner)(nil)

// New returns an Offliner working under p through fsys.
func New(p kpath.Paths, fsys kpath.FS, opts Options) *Offliner {
	return &Offliner{paths: p, fsys: fsys, opts: opts.withDefaults()}
}
