package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/selfprotect/selfprotect/countonce"
	"github.com/selfprotect/selfprotect/edac"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/mce"
	"github.com/selfprotect/selfprotect/tracefs"
)

// sourceSet runs the chosen sources and remembers how each one ended.
type sourceSet struct {
	wg      sync.WaitGroup
	ctx     context.Context
	out     chan<- fault.Event
	lastTry time.Time // touched only by the main loop

	mu      sync.Mutex // guards the fields below and every entry
	entries []*sourceEntry
	tracefs *sourceEntry
	edac    *sourceEntry
	inst    *tracefs.Instance
	trace   *tracefs.Source
}

type sourceEntry struct {
	name   string
	state  string
	detail string
}

func (s *sourceSet) names() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n []string
	for _, e := range s.entries {
		if e.state == "armed" {
			n = append(n, e.name)
		}
	}
	return strings.Join(n, ",")
}

func (s *sourceSet) status() []SourceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SourceStatus, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, SourceStatus{Name: e.name, State: e.state, Detail: e.detail})
	}
	return out
}

func (s *sourceSet) dead() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.entries {
		if e.state == "dead" {
			out = append(out, fmt.Sprintf("source %s died: %s", e.name, e.detail))
		}
	}
	return out
}

func (s *sourceSet) addCounters(c *EventCounters) {
	s.mu.Lock()
	trace := s.trace
	s.mu.Unlock()
	if trace == nil {
		return
	}
	st := trace.Stats()
	c.Undecodable = st.Undecodable
	c.CorruptPages = st.CorruptPages
	c.TracePages = st.Pages
	c.TraceMissed = st.Missed
}

func (s *sourceSet) instance() *tracefs.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inst
}

func (s *sourceSet) add(name, state, detail string) *sourceEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &sourceEntry{name: name, state: state, detail: detail}
	s.entries = append(s.entries, e)
	return e
}

// start runs src as entry e until ctx ends; a source that returns early is
// dead.
func (s *sourceSet) start(ctx context.Context, d *Daemon, e *sourceEntry, src fault.EventSource, out chan<- fault.Event, detail string) {
	s.mu.Lock()
	e.state, e.detail = "armed", detail
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := src.Run(ctx, out)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		e.state = "dead"
		if err != nil {
			e.detail = err.Error()
		} else {
			e.detail = "stopped unexpectedly"
		}
		s.mu.Unlock()
		d.log.WithError(err).WithField("source", src.Name()).Error("event source died")
	}()
}

func (s *sourceSet) wait() { s.wg.Wait() }

func (s *sourceSet) close() {
	if inst := s.instance(); inst != nil {
		_ = inst.Close()
	}
}

// sourceRetry is how often a source that was unavailable is tried again:
// tracefs may be mounted, or an EDAC driver loaded, after we started.
const sourceRetry = 30 * time.Second

// startSources picks every source this machine offers. Preference order is
// eBPF (not built yet), the tracefs instance, then EDAC polling, which runs
// alongside the tracepoints to catch what they missed. A source that is not
// there now is retried from the health check; with none at all the daemon
// keeps running, not armed, so `status` can say why.
func (d *Daemon) startSources(ctx context.Context, out chan<- fault.Event) *sourceSet {
	set := &sourceSet{ctx: ctx, out: out}
	set.add("ebpf", "unavailable", "not built in this version; tracefs is used")
	set.tracefs = set.add("tracefs", "unavailable", "")
	set.edac = set.add("edac-poll", "unavailable", "")
	d.tryTracefs(set)
	d.tryEDAC(set)
	return set
}

// retrySources re-tries unavailable sources at most every sourceRetry.
func (d *Daemon) retrySources(set *sourceSet) {
	if d.now().Sub(set.lastTry) < sourceRetry {
		return
	}
	set.mu.Lock()
	tr, ed := set.tracefs.state == "unavailable", set.edac.state == "unavailable"
	set.mu.Unlock()
	if tr {
		d.tryTracefs(set)
	}
	if ed {
		d.tryEDAC(set)
	}
}

func (d *Daemon) tryTracefs(set *sourceSet) {
	set.lastTry = d.now()
	inst, err := tracefs.OpenInstance(d.opts.Paths, tracefs.Options{
		BufferSizeKB: d.opts.TraceBufferKB,
		Events:       []string{"mce/mce_record", "ras/*"},
	}, d.log)
	if err != nil {
		set.mu.Lock()
		changed := set.tracefs.detail != err.Error()
		set.tracefs.detail = err.Error()
		set.mu.Unlock()
		if changed {
			d.log.WithError(err).Error("tracefs instance unavailable: MCE tracepoints are not watched (retrying every 30s)")
		}
		return
	}
	decoders := map[string]tracefs.Decoder{
		"mce/mce_record":           mce.TraceDecoder,
		"ras/mc_event":             edac.TraceDecoder,
		"ras/extlog_mem_event":     edac.ExtlogDecoder,
		"ras/memory_failure_event": edac.MemoryFailureDecoder,
	}
	trace := tracefs.NewSource(inst, decoders, d.log, d.now)
	set.mu.Lock()
	set.inst, set.trace = inst, trace
	set.mu.Unlock()
	set.start(set.ctx, d, set.tracefs, trace, set.out, "instance "+inst.Dir())
}

func (d *Daemon) tryEDAC(set *sourceSet) {
	set.lastTry = d.now()
	ctrls, err := edac.ReadControllers(d.opts.Paths, d.opts.FS)
	detail := ""
	switch {
	case errors.Is(err, edac.ErrNoEDAC):
		detail = "no EDAC memory controller in sysfs"
	case err != nil && len(ctrls) == 0:
		detail = err.Error()
		d.log.WithError(err).Warn("EDAC sysfs unreadable")
	}
	if detail != "" {
		set.mu.Lock()
		set.edac.detail = detail
		set.mu.Unlock()
		d.log.Debug("no EDAC driver bound; memory errors are counted from mce_record")
		return
	}
	if err != nil {
		d.log.WithError(err).Warn("some EDAC files unreadable")
	}
	poller := edac.NewPoller(d.opts.Paths, d.opts.FS, d.log, d.now)
	if _, err := poller.Poll(); err != nil { // baseline: earlier counts are history
		d.log.WithError(err).Warn("EDAC baseline incomplete")
	}
	// The stage joins MCA locations to these DIMMs; with a driver bound it
	// keys DIMMs by EDAC label only.
	d.stage.SetLayout(layout(edac.Slots(ctrls)))
	d.mu.Lock()
	d.edacBound = true
	d.kernel.EDAC = fmt.Sprintf("bound (%d controllers)", len(ctrls))
	d.mu.Unlock()
	d.policyMu.Lock()
	interval := d.cfg.EDAC.PollInterval
	d.policyMu.Unlock()
	set.start(set.ctx, d, set.edac, edac.NewSource(poller, interval), set.out, fmt.Sprintf("%d controllers, every %s", len(ctrls), interval))
}

func layout(slots []edac.Slot) []countonce.Slot {
	out := make([]countonce.Slot, len(slots))
	for i, s := range slots {
		out[i] = countonce.Slot{MC: s.MC, Label: s.Label, Socket: s.Socket, Channel: s.Channel}
	}
	return out
}

// trimTime keeps timestamps readable in logs.
func trimTime(t time.Time) string { return t.Format(time.RFC3339) }
