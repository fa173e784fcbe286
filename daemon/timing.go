package daemon

import (
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/fault"
)

// decisionStep is a point on the deciding record's way from the source to
// the kernel write.
type decisionStep int

const (
	stepReceived  decisionStep = iota // the source read and decoded it
	stepObserved                      // the main loop took it
	stepDiagnosed                     // the engine tripped: case opened
	stepPicked                        // the action worker took the job
	stepIntended                      // the case and its intents are durable (journal, or the store when it cannot)
	stepChecked                       // the budgets are read and checked: the actuator is called
	stepIsolated                      // the actuator wrote and verified
	stepStored                        // the decision is in the store too (after the write: the journal covered it)
	decisionSteps
)

// timingFields name the stage ending at each step (from the one before).
var timingFields = [decisionSteps]string{
	stepObserved:  "to_loop_ms",
	stepDiagnosed: "diagnose_ms",
	stepPicked:    "to_worker_ms",
	stepIntended:  "intent_durable_ms",
	stepChecked:   "budget_ms",
	stepIsolated:  "isolate_ms",
	stepStored:    "then_stored_ms",
}

// decisionTiming stamps one decision's steps so the latency from an error
// to its isolation can be split where it is spent (make bench-kernel reads
// the logged fields). nil for decisions no record made (replays): its
// methods do nothing then.
type decisionTiming struct {
	at [decisionSteps]time.Time
}

func newDecisionTiming(received, observed, diagnosed time.Time) *decisionTiming {
	t := &decisionTiming{}
	t.at[stepReceived], t.at[stepObserved], t.at[stepDiagnosed] = received, observed, diagnosed
	return t
}

func (t *decisionTiming) mark(s decisionStep, now time.Time) {
	if t != nil {
		t.at[s] = now
	}
}

// fields are the stages in ms, and the total from the record's receipt to
// the kernel write (what the store does after it is not on the way); a
// step never stamped leaves its stage out.
func (t *decisionTiming) fields() logrus.Fields {
	f := logrus.Fields{}
	prev := t.at[stepReceived]
	var total time.Duration
	for s := stepObserved; s < decisionSteps; s++ {
		if t.at[s].IsZero() {
			continue
		}
		f[timingFields[s]] = ms(t.at[s].Sub(prev))
		prev = t.at[s]
		if s <= stepIsolated {
			total = prev.Sub(t.at[stepReceived])
		}
	}
	f["total_ms"] = ms(total)
	return f
}

// log reports the stages, once per decision and after the kernel write:
// never on the way to it. At info level: how long an isolation took is
// the operator's question as much as the benchmark's, and a decision is
// rare enough for one line more. received_mono_us dates the record's receipt on
// CLOCK_MONOTONIC, the clock a benchmark's injector and probe stamp with
// (make bench-kernel splits the time from the injection on it).
func (t *decisionTiming) log(l logrus.FieldLogger, c fault.Case, now time.Time) {
	if t == nil {
		return
	}
	f := t.fields()
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		f["received_mono_us"] = (ts.Nano() - now.Sub(t.at[stepReceived]).Nanoseconds()) / 1000
	}
	l.WithFields(f).WithField("case", c.ID).WithField("suspect", c.Suspect).Info("decision timing")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
