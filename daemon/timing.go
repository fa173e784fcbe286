package daemon

import (
	"time"

	"github.com/sirupsen/logrus"
)

// decisionStep is a point on the deciding record's way from the source to
// the kernel write.
type decisionStep int

const (
	stepReceived  decisionStep = iota // the source read and decoded it
	stepObserved                      // the main loop took it
	stepDiagnosed                     // the engine tripped: case opened
	stepPicked                        // the action worker took the job
	stepIntended                      // the case, its intents and the events that fed it are stored
	stepIsolated                      // the actuator wrote and verified
	decisionSteps
)

// timingFields name the stage ending at each step (from the one before).
var timingFields = [decisionSteps]string{
	stepObserved:  "to_loop_ms",
	stepDiagnosed: "diagnose_ms",
	stepPicked:    "to_worker_ms",
	stepIntended:  "intent_stored_ms",
	stepIsolated:  "isolate_ms",
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

// fields are the stages in ms, and the total from the record's receipt; a
// step never stamped leaves its stage out.
func (t *decisionTiming) fields() logrus.Fields {
	f := logrus.Fields{}
	prev := t.at[stepReceived]
	for s := stepObserved; s < decisionSteps; s++ {
		if t.at[s].IsZero() {
			continue
		}
		f[timingFields[s]] = ms(t.at[s].Sub(prev))
		prev = t.at[s]
	}
	f["total_ms"] = ms(prev.Sub(t.at[stepReceived]))
	return f
}

// log reports the stages at debug level, after the kernel write: never on
// the way to it.
func (t *decisionTiming) log(l logrus.FieldLogger, caseID string) {
	if t == nil {
		return
	}
	l.WithFields(t.fields()).WithField("case", caseID).Debug("decision timing")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
