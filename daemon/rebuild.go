package daemon

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/countonce"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
	"github.com/selfprotect/selfprotect/store"
)

// engineBuild is a rate engine being rebuilt under cfg's rules from the
// records of the window, oldest first, through a count-once stage: the
// decisions its engine takes on the way are checked against the stored
// cases before it is installed.
type engineBuild struct {
	cfg       *policy.Config
	since     time.Time // the window's start: older stored events do not count
	stage     *countonce.Stage
	eng       *policy.Engine
	decisions []policy.Decision
	verdicts  []countonce.Verdict
	events    int
}

func newEngineBuild(cfg *policy.Config, stage *countonce.Stage, now time.Time) *engineBuild {
	return &engineBuild{cfg: cfg, since: now.Add(-window(cfg)), stage: stage, eng: policy.NewEngine(cfg)}
}

func (b *engineBuild) observe(ev fault.Event) {
	b.events++
	if ev.Source.KernelAction() {
		return // the kernel's action on a page, through either source: not an error
	}
	b.verdicts = b.stage.AppendObserve(b.verdicts[:0], ev)
	b.feed(b.verdicts)
}

func (b *engineBuild) feed(vs []countonce.Verdict) {
	for i := range vs {
		b.decisions = append(b.decisions, b.eng.ObserveParts(&vs[i].Event, parts(vs[i].New))...)
	}
}

// flush counts the stage's counter deltas that have waited their window.
func (b *engineBuild) flush(now time.Time) { b.feed(b.stage.Flush(now)) }

// caseFilter selects the stored cases the decisions are checked against:
// a case opened up to a window before the first counted error may hold
// the decision those errors call for again.
func (b *engineBuild) caseFilter() store.CaseFilter {
	return store.CaseFilter{Since: b.since.Add(-window(b.cfg))}
}

func caseKey(diag fault.Diagnosis, suspect fault.Resource) string {
	return string(diag) + "|" + string(suspect)
}

// window is the longest rule window: how far back events matter.
func window(cfg *policy.Config) time.Duration {
	r := cfg.Rules
	return max(r.Page.Window, r.DIMM.Window, r.Row.Window, r.CPU.Window)
}

// rebuildEngine replaces the engine with one fed the stored events of the
// window through stage, so counts survive a restart. It runs at start,
// before the main loop takes any record, so it reads the store in place.
// A decision the rebuilt engine takes that no stored case holds was lost
// by the last run (it stopped between the deciding error and the
// write-ahead record): it is taken now.
func (d *Daemon) rebuildEngine(stage *countonce.Stage) {
	d.policyMu.Lock()
	cfg := d.cfg
	d.policyMu.Unlock()
	b := newEngineBuild(cfg, stage, d.now())
	// Streamed, not loaded: a day-long storm's history is read one row at
	// a time and the engine holds only its bounded state.
	err := d.store.EachEvent(store.EventQuery{Since: b.since}, func(ev fault.Event) error {
		b.observe(ev)
		return nil
	})
	if err != nil {
		d.log.WithError(err).Error("reading stored events: the rate engines start empty")
		b.eng, b.decisions, b.events = policy.NewEngine(cfg), nil, 0
	}
	b.flush(d.now())
	cases, casesErr := d.store.Cases(b.caseFilter())
	lost := d.install(b, cases, casesErr, nil)
	d.rules = cfg
	d.log.WithFields(logrus.Fields{"events": b.events, "since": trimTime(b.since), "lost_decisions": lost}).
		Info("rate engines rebuilt from the stored events")
}

// install takes the decisions b's engine took that no case holds, then
// puts b's engine in place. cases are the stored cases b.caseFilter
// selects (casesErr when they could not be read: then nothing is taken);
// known holds the keys (caseKey) of the cases the store may not have yet.
// It returns how many decisions it took.
func (d *Daemon) install(b *engineBuild, cases []fault.Case, casesErr error, known map[string]bool) int {
	decisions := b.decisions
	if casesErr != nil {
		d.log.WithError(casesErr).Error("reading recent cases: decisions of the rebuilt engines are not replayed")
		decisions = nil
	}
	if known == nil {
		known = map[string]bool{}
	}
	for _, c := range cases {
		known[caseKey(c.Diagnosis, c.Suspect)] = true
		if store.Resolved(c.State) {
			// The live engine was re-armed when the operator resolved it.
			b.eng.Reset(c.Suspect)
			for _, r := range c.Also {
				b.eng.Reset(r)
			}
		}
	}
	lost := 0
	for _, dec := range decisions {
		c := dec.Case
		k := caseKey(c.Diagnosis, c.Suspect)
		if c.Rule == policy.RuleStorm || known[k] {
			continue
		}
		known[k] = true
		lost++
		d.log.WithFields(logrus.Fields{"case": c.ID, "diagnosis": c.Diagnosis, "suspect": c.Suspect}).
			Warn("a decision the stored errors call for has no case (the last run stopped first, or the new rules call for it): taking it now")
		d.openCase(dec, nil)
	}
	d.policyMu.Lock()
	// What an operator re-armed while the engine was rebuilt beside the
	// intake was reset in the live engine then, and is in this one now.
	for _, r := range d.rearmed {
		b.eng.Reset(r)
	}
	d.collectRearmed, d.rearmed = false, nil
	d.engine = b.eng
	d.policyMu.Unlock()
	return lost
}

// A rule change on SIGHUP rebuilds the engines beside the event intake,
// which must never wait on store work (issue 9):
//
//   - Boundary (main loop, startRebuild): the history writer, which holds
//     the newest records for up to seconds before it stores them, hands
//     over a copy of those and a snapshot of the store taken at that
//     instant (store.EventSnapshot), and waits only for that. Every record
//     the main loop observed before is then in the snapshot or in the
//     copy, once; every later one goes into the rebuild's tail.
//   - Read (a goroutine, buildBeside): a fresh stage and engine of its own
//     are fed the snapshot's events of the window, then the copy; then,
//     once the action worker has done every job queued before the
//     boundary, the stored cases are read. The main loop keeps observing
//     with the old engine meanwhile.
//   - Swap (main loop, finishRebuild): the tail goes through the new stage
//     and engine, the decisions no case holds are taken (the stored cases,
//     those the main loop opened since the boundary and those still
//     unsettled in memory count as known), and the engine is swapped.
//
// A second rule change during a rebuild supersedes it: the first is
// cancelled, its result never read, and a new boundary is taken, which
// holds every record the first one's tail did. A stop cancels it and waits
// for its goroutine before the store closes.

// rebuildTailCap bounds the records the main loop keeps for a rebuild in
// flight (~300 bytes each): the same bound as the history writer's on the
// records it holds when the store fails. Reaching it means the read runs
// far behind a storm; the rebuild then starts again from a new boundary
// (the kept records are by then stored or held by the writer, so none is
// lost, and the memory is given back), which stalls nothing but repeats
// the read. Stalling the intake for a synchronous rebuild instead is what
// this design exists to avoid.
const rebuildTailCap = 100_000

// rebuildRestarts is how often a rebuild starts again after its tail
// reached the bound before it gives up: a read that keeps falling behind
// the intake would otherwise repeat forever. Giving up keeps the old
// engines, logged as an error: they go on protecting under the previous
// rules until a SIGHUP in a calmer moment.
const rebuildRestarts = 2

// rebuild is a SIGHUP rebuild in flight (main loop only).
type rebuild struct {
	ctx      context.Context // the daemon's: a restart's parent
	cancel   context.CancelFunc
	cfg      *policy.Config // the rules being rebuilt for
	prev     *policy.Config // the rules the installed engine counts under
	restarts int
	started  time.Time
	// result receives the goroutine's one answer; buffered, so a goroutine
	// whose rebuild was superseded never blocks on it.
	result chan rebuilt
	// tail is what observe took since the boundary, in order.
	tail []fault.Event
	// opened holds the decisions the main loop opened since the boundary
	// (caseKey): the worker may not have stored them by the swap.
	opened map[string]bool
}

// rebuilt is what a rebuild's goroutine hands back.
type rebuilt struct {
	b        *engineBuild
	mark     int64 // the snapshot's last event id
	held     int   // records the writer held at the boundary
	cases    []fault.Case
	casesErr error
	err      error // reading the history failed: nothing is installed
}

// rebuildResult is the channel the main loop waits on for the rebuild in
// flight: nil (never ready) when there is none.
func (d *Daemon) rebuildResult() <-chan rebuilt {
	if d.rebuilding == nil {
		return nil
	}
	return d.rebuilding.result
}

// startRebuild takes the boundary and starts the read for cfg's rules,
// superseding the rebuild in flight if there is one. restarts counts the
// overflows that led to this start.
func (d *Daemon) startRebuild(ctx context.Context, cfg *policy.Config, restarts int) {
	prev := d.rules
	if rb := d.rebuilding; rb != nil {
		prev = rb.prev
		rb.cancel()
		d.rebuilding = nil
	}
	rctx, cancel := context.WithCancel(ctx)
	var snap *store.EventSnapshot
	var held []fault.Event
	var err error
	boundary := func() { snap, err = d.store.SnapshotEvents(rctx) }
	taken := d.withHistory(func(h []fault.Event) bool {
		boundary()
		held = slices.Clone(h)
		return false // the writer keeps and stores them, as it would have
	})
	if !taken {
		boundary() // the writer has stopped: it stored what it held
	}
	if err != nil {
		cancel()
		d.rules = prev
		d.policyMu.Lock()
		d.collectRearmed, d.rearmed = false, nil
		d.policyMu.Unlock()
		d.log.WithError(err).Error("rebuilding the rate engines under the new rules: the rate engines keep counting under the previous rules (a SIGHUP tries again)")
		return
	}
	// A job behind every decision queued so far: once the worker reaches
	// it, their cases are in the store (or held in memory after a failed
	// write, which the swap looks at too).
	barrier := make(chan struct{})
	d.jobs.push(job{fn: func() { close(barrier) }})
	d.policyMu.Lock()
	d.collectRearmed = true // kept across a superseded rebuild: harmless, re-arming twice
	d.policyMu.Unlock()
	rb := &rebuild{ctx: ctx, cancel: cancel, cfg: cfg, prev: prev, restarts: restarts, started: d.now(),
		result: make(chan rebuilt, 1), opened: map[string]bool{}}
	d.rebuilding, d.rules = rb, cfg
	// A stage of its own: the live one has already merged these records.
	b := newEngineBuild(cfg, countonce.New(countonce.Options{}), rb.started)
	d.log.WithFields(logrus.Fields{"mark": snap.Mark, "held": len(held), "since": trimTime(b.since)}).
		Debug("rebuilding the rate engines beside the intake")
	d.rebuilds.Add(1)
	go func() {
		defer d.rebuilds.Done()
		d.buildBeside(rctx, b, snap, held, barrier, rb.result)
	}()
}

// buildBeside feeds b the snapshot's events of the window, then the
// records the writer held at the boundary, and hands it back with the
// stored cases. It touches nothing the main loop owns: b is its own until
// handed back, and it reads through the snapshot's connection and the
// store's read pool, which run beside the writer's connection.
func (d *Daemon) buildBeside(ctx context.Context, b *engineBuild, snap *store.EventSnapshot, held []fault.Event,
	barrier <-chan struct{}, out chan<- rebuilt) {
	defer snap.Close()
	read := d.readSnapshot
	if read == nil {
		read = func(ctx context.Context, snap *store.EventSnapshot, q store.EventQuery, fn func(fault.Event) error) error {
			return snap.Each(ctx, q, fn)
		}
	}
	res := rebuilt{b: b, mark: snap.Mark, held: len(held)}
	err := read(ctx, snap, store.EventQuery{Since: b.since}, func(ev fault.Event) error {
		b.observe(ev)
		return nil
	})
	snap.Close() // not held while waiting for the worker
	if ctx.Err() != nil {
		return // superseded or stopping: nobody reads the result
	}
	if err != nil {
		res.err = fmt.Errorf("reading the stored events up to id %d: %w", snap.Mark, err)
		out <- res
		return
	}
	for _, ev := range held {
		b.observe(ev)
	}
	select {
	case <-barrier:
	case <-ctx.Done():
		return
	}
	res.cases, res.casesErr = d.store.Cases(b.caseFilter())
	out <- res
}

// noteForRebuild keeps a record observe takes after the boundary, once
// the stage would see it.
func (d *Daemon) noteForRebuild(ev fault.Event) {
	if rb := d.rebuilding; rb != nil {
		rb.tail = append(rb.tail, ev)
	}
}

// boundRebuild runs before a record is observed: a tail at its bound
// starts the rebuild again from a new boundary (which then holds this
// record, stored or with the writer, or in the new tail), or gives up.
func (d *Daemon) boundRebuild() {
	rb := d.rebuilding
	if rb == nil || len(rb.tail) < d.tailCap {
		return
	}
	if rb.restarts >= rebuildRestarts {
		d.abandonRebuild(fmt.Errorf("%d records arrived during the read of the history, %d times: the read runs behind the intake",
			len(rb.tail), rb.restarts+1))
		return
	}
	d.log.WithField("records", len(rb.tail)).
		Warn("records kept during the engine rebuild reached their bound: starting it again from a new boundary")
	d.startRebuild(rb.ctx, rb.cfg, rb.restarts+1)
}

// finishRebuild installs what the goroutine built, after the records
// observed since the boundary.
func (d *Daemon) finishRebuild(res rebuilt) {
	rb := d.rebuilding
	if res.err != nil {
		d.abandonRebuild(res.err)
		return
	}
	b := res.b
	for i := range rb.tail {
		b.observe(rb.tail[i])
	}
	now := d.now()
	// The live stage lets out the counter deltas that have waited their
	// window into the old engine, as its next tick would: the new stage
	// lets out the same ones into the new engine, and both keep the rest.
	// Any decision it takes is opened while rb still records them.
	d.feed(d.stage.Flush(now), now)
	b.flush(now)
	d.rebuilding = nil
	rb.cancel()
	known := rb.opened
	d.cases.activeKeys(known)
	lost := d.install(b, res.cases, res.casesErr, known)
	d.log.WithFields(logrus.Fields{"events": b.events, "held": res.held, "after_boundary": len(rb.tail), "mark": res.mark,
		"since": trimTime(b.since), "lost_decisions": lost, "took": now.Sub(rb.started).Round(time.Millisecond)}).
		Info("rate engines rebuilt from the stored events")
	d.log.WithField("mode", d.mode()).Info("policy reloaded; rate engines rebuilt under the new rules")
}

// abandonRebuild ends the rebuild in flight and keeps the installed
// engines, under the rules they count by: a later SIGHUP tries again.
func (d *Daemon) abandonRebuild(err error) {
	rb := d.rebuilding
	d.rebuilding = nil
	rb.cancel()
	d.rules = rb.prev
	d.policyMu.Lock()
	d.collectRearmed, d.rearmed = false, nil
	d.policyMu.Unlock()
	d.log.WithError(err).Error("rebuilding the rate engines under the new rules failed: they keep counting under the previous rules (a SIGHUP tries again)")
}

// stopRebuild ends the rebuild in flight at stop and waits for every
// rebuild goroutine (a superseded one may still be ending): they read the
// store, which closes when Run returns.
func (d *Daemon) stopRebuild() {
	if rb := d.rebuilding; rb != nil {
		rb.cancel()
		d.rebuilding = nil
		d.log.Info("stopping during an engine rebuild: the next start rebuilds the engines under the new rules")
	}
	d.rebuilds.Wait()
}
