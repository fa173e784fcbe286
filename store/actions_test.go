package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func TestActionRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	a := newCase("aaaaaaaa-0001", at(0), fault.CPU(6))
	b := newCase("bbbbbbbb-0002", at(time.Minute), fault.Page(0x8000000000000))
	require.NoError(t, s.SaveCase(a))
	require.NoError(t, s.SaveCase(b))
	actions := []fault.Action{
		{CaseID: a.ID, Time: at(time.Second), Resource: fault.CPU(6), Kind: "cpu-offline",
			Outcome: fault.OutcomeRefused, Violations: []string{"cpu-rate", "min-online"},
			Detail: "refused: one CPU per hour; 2 CPUs must stay online"},
		{CaseID: a.ID, Time: at(2 * time.Second), Resource: fault.CPU(6), Kind: "cpu-offline",
			Outcome: fault.OutcomeIsolated, Attempts: 3, Detail: "EBUSY twice", Undo: "echo 1 > /sys/devices/system/cpu/cpu6/online"},
		{CaseID: b.ID, Time: at(3 * time.Second), Resource: b.Suspect, Kind: "soft-offline", Outcome: fault.OutcomeDryRun},
		{CaseID: a.ID, Time: at(4 * time.Second), Resource: fault.CPU(38), Kind: "cpu-offline", Outcome: fault.OutcomeIsolated, Attempts: 1},
	}
	for _, x := range actions {
		require.NoError(t, s.AddAction(x))
	}

	tests := []struct {
		name string
		get  func() ([]fault.Action, error)
		want []fault.Action
	}{
		{"case a", func() ([]fault.Action, error) { return s.Actions(a.ID) }, []fault.Action{actions[0], actions[1], actions[3]}},
		{"case b", func() ([]fault.Action, error) { return s.Actions(b.ID) }, []fault.Action{actions[2]}},
		{"no actions", func() ([]fault.Action, error) { return s.Actions("none") }, nil},
		{"all", func() ([]fault.Action, error) { return s.AllActions(0) }, actions},
		{"newest two, oldest first", func() ([]fault.Action, error) { return s.AllActions(2) }, actions[2:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.get()
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	_, err := s.AllActions(-1)
	require.ErrorContains(t, err, "negative limit")
}

func TestAddActionUnknownCase(t *testing.T) {
	s, _ := openTemp(t)
	err := s.AddAction(fault.Action{CaseID: "ghost", Resource: fault.CPU(1), Outcome: fault.OutcomeIsolated})
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorContains(t, err, "ghost")
}
