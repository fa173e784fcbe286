package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/selfprotect/selfprotect/edac"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/mce"
	"github.com/selfprotect/selfprotect/tracefs"
)

// sourceSet runs the chosen sources and remembers how each one ended.
type sourceSet struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	entries []*sourceEntry
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
	if s.trace == nil {
		return
	}
	st := s.trace.Stats()
	c.Undecodable = st.Undecodable
	c.CorruptPages = st.CorruptPages
	c.TracePages = st.Pages
	c.TraceMissed = st.Missed
}

func (s *sourceSet) add(name, state, detail string) *sourceEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &sourceEntry{name: name, state: state, detail: detail}
	s.entries = append(s.entries, e)
	return e
}

// start runs src until ctx ends; a source that returns early is dead.
func (s *sourceSet) start(ctx context.Context, d *Daemon, src fault.EventSource, out chan<- fault.Event, detail string) {
	e := s.add(src.Name(), "armed", detail)
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
	if s.inst != nil {
		_ = s.inst.Close()
	}
}

// startSources picks every source this machine offers. Preference order is
// eBPF (not built yet), the tracefs instance, then EDAC polling, which runs
// alongside the tracepoints to catch what they missed.
func (d *Daemon) startSources(ctx context.Context, out chan<- fault.Event) (*sourceSet, error) {
	set := &sourceSet{}
	set.add("ebpf", "unavailable", "not built in this version; tracefs is used")

	inst, err := tracefs.OpenInstance(d.opts.Paths, tracefs.Options{
		BufferSizeKB: d.opts.TraceBufferKB,
		Events:       []string{"mce/mce_record", "ras/*"},
	}, d.log)
	if err != nil {
		set.add("tracefs", "unavailable", err.Error())
		d.log.WithError(err).Error("tracefs instance unavailable: MCE tracepoints are not watched")
	} else {
		set.inst = inst
		decoders := map[string]tracefs.Decoder{
			"mce/mce_record": mce.TraceDecoder,
			"ras/mc_event":   edac.TraceDecoder,
		}
		set.trace = tracefs.NewSource(inst, decoders, d.log, d.now)
		set.start(ctx, d, set.trace, out, "instance "+inst.Dir())
	}

	ctrls, err := edac.ReadControllers(d.opts.Paths, d.opts.FS)
	switch {
	case errors.Is(err, edac.ErrNoEDAC):
		d.log.Debug("no EDAC driver bound; memory errors are counted from mce_record")
		set.add("edac-poll", "unavailable", "no EDAC memory controller in sysfs")
	case err != nil && len(ctrls) == 0:
		d.log.WithError(err).Warn("EDAC sysfs unreadable")
		set.add("edac-poll", "unavailable", err.Error())
	default:
		if err != nil {
			d.log.WithError(err).Warn("some EDAC files unreadable")
		}
		d.mu.Lock()
		d.edacBound = true
		d.kernel.EDAC = fmt.Sprintf("bound (%d controllers)", len(ctrls))
		d.mu.Unlock()
		d.poller = edac.NewPoller(d.opts.Paths, d.opts.FS, d.log, d.now)
		if _, err := d.poller.Poll(); err != nil { // baseline: earlier counts are history
			d.log.WithError(err).Warn("EDAC baseline incomplete")
		}
		d.policyMu.Lock()
		interval := d.cfg.EDAC.PollInterval
		d.policyMu.Unlock()
		set.start(ctx, d, edac.NewSource(d.poller, interval), out, fmt.Sprintf("%d controllers, every %s", len(ctrls), interval))
	}
	if set.names() == "" {
		return nil, errNoSources
	}
	return set, nil
}

// trimTime keeps timestamps readable in logs.
func trimTime(t time.Time) string { return t.Format(time.RFC3339) }
