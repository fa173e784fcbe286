package daemon

import (
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func TestDecisionTimingFields(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	at := func(us int) time.Time { return t0.Add(time.Duration(us) * time.Microsecond) }
	tests := []struct {
		name  string
		marks map[decisionStep]int // µs after receipt
		want  logrus.Fields
	}{
		{
			name:  "every step",
			marks: map[decisionStep]int{stepPicked: 1500, stepIntended: 9000, stepChecked: 12000, stepIsolated: 20000, stepStored: 26000},
			want: logrus.Fields{"to_loop_ms": 0.1, "diagnose_ms": 0.25, "to_worker_ms": 1.15,
				"intent_durable_ms": 7.5, "budget_ms": 3.0, "isolate_ms": 8.0, "then_stored_ms": 6.0, "total_ms": 20.0},
		},
		{
			// The stage after a step never stamped runs from the last
			// stamped one.
			name:  "a step missing",
			marks: map[decisionStep]int{stepIntended: 3000, stepIsolated: 5000},
			want: logrus.Fields{"to_loop_ms": 0.1, "diagnose_ms": 0.25,
				"intent_durable_ms": 2.65, "isolate_ms": 2.0, "total_ms": 5.0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm := newDecisionTiming(at(0), at(100), at(350))
			for s, us := range tt.marks {
				tm.mark(s, at(us))
			}
			require.Equal(t, tt.want, tm.fields())
		})
	}
}

func TestDecisionTimingNilIsInert(t *testing.T) {
	var tm *decisionTiming
	require.NotPanics(t, func() {
		tm.mark(stepPicked, time.Now())
		tm.log(logrus.New(), fault.Case{ID: "case"}, time.Now())
	})
}
