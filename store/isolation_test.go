package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func TestIsolationMemory(t *testing.T) {
	page := fault.Page(0x2d94)
	cpu := fault.CPU(6)
	type act struct {
		caseID  string
		r       fault.Resource
		outcome fault.Outcome
		sec     int
	}
	type update struct {
		caseID string
		state  fault.CaseState
	}
	tests := []struct {
		name     string
		cases    map[string]fault.CaseState // initial states
		acts     []act
		updates  []update // applied after the actions
		want     []Isolation
		actedOn  []fault.Resource
		notActed []fault.Resource
	}{
		{
			name:    "isolated by us",
			cases:   map[string]fault.CaseState{"A": fault.CaseIsolated},
			acts:    []act{{"A", page, fault.OutcomeIsolated, 1}},
			want:    []Isolation{{Resource: page, CaseID: "A", Kind: "k", At: at(time.Second), ByUs: true}},
			actedOn: []fault.Resource{page}, notActed: []fault.Resource{cpu},
		},
		{
			name:    "isolated by another actor is listed but not ours",
			cases:   map[string]fault.CaseState{"A": fault.CaseIsolated},
			acts:    []act{{"A", page, fault.OutcomeIsolatedByOther, 1}},
			want:    []Isolation{{Resource: page, CaseID: "A", Kind: "k", At: at(time.Second), ByUs: false}},
			actedOn: []fault.Resource{page},
		},
		{
			name:     "repair frees the resource",
			cases:    map[string]fault.CaseState{"A": fault.CaseIsolated},
			acts:     []act{{"A", page, fault.OutcomeIsolated, 1}},
			updates:  []update{{"A", fault.CaseRepaired}},
			notActed: []fault.Resource{page},
		},
		{
			name:     "acquit and close free it too",
			cases:    map[string]fault.CaseState{"A": fault.CaseIsolated, "B": fault.CaseIsolated},
			acts:     []act{{"A", page, fault.OutcomeIsolated, 1}, {"B", cpu, fault.OutcomeIsolated, 2}},
			updates:  []update{{"A", fault.CaseAcquit}, {"B", fault.CaseClosed}},
			notActed: []fault.Resource{page, cpu},
		},
		{
			name:     "dry run, refusal, pause, not present: nothing was done",
			cases:    map[string]fault.CaseState{"A": fault.CaseOpen},
			acts:     []act{{"A", page, fault.OutcomeDryRun, 1}, {"A", page, fault.OutcomeRefused, 2}, {"A", cpu, fault.OutcomePaused, 3}, {"A", cpu, fault.OutcomeNotPresent, 4}},
			notActed: []fault.Resource{page, cpu},
		},
		{
			name:    "latest success decides: a newer case replaces the older",
			cases:   map[string]fault.CaseState{"A": fault.CaseIsolated, "B": fault.CaseIsolated},
			acts:    []act{{"A", page, fault.OutcomeIsolated, 1}, {"B", page, fault.OutcomeAlreadyIsolated, 5}},
			want:    []Isolation{{Resource: page, CaseID: "B", Kind: "k", At: at(5 * time.Second), ByUs: true}},
			actedOn: []fault.Resource{page},
		},
		{
			name:     "repairing the latest case frees it even if an older one names it",
			cases:    map[string]fault.CaseState{"A": fault.CaseIsolated, "B": fault.CaseIsolated},
			acts:     []act{{"A", page, fault.OutcomeIsolated, 1}, {"B", page, fault.OutcomeAlreadyIsolated, 5}},
			updates:  []update{{"B", fault.CaseRepaired}},
			notActed: []fault.Resource{page},
		},
		{
			name:    "a failure after a success keeps it listed",
			cases:   map[string]fault.CaseState{"A": fault.CaseFailed},
			acts:    []act{{"A", cpu, fault.OutcomeIsolated, 1}, {"A", cpu, fault.OutcomeFailed, 9}},
			want:    []Isolation{{Resource: cpu, CaseID: "A", Kind: "k", At: at(time.Second), ByUs: true}},
			actedOn: []fault.Resource{cpu},
		},
		{
			name:    "failure in an isolated case counts as acted",
			cases:   map[string]fault.CaseState{"A": fault.CaseIsolated},
			acts:    []act{{"A", page, fault.OutcomeFailed, 1}},
			actedOn: []fault.Resource{page},
		},
		{
			name:     "failure in a failed case lets a new diagnosis retry",
			cases:    map[string]fault.CaseState{"A": fault.CaseFailed},
			acts:     []act{{"A", page, fault.OutcomeFailed, 1}},
			notActed: []fault.Resource{page},
		},
		{
			name:  "listed oldest first",
			cases: map[string]fault.CaseState{"A": fault.CaseIsolated, "B": fault.CaseOpen},
			acts:  []act{{"B", cpu, fault.OutcomeIsolated, 7}, {"A", page, fault.OutcomeIsolated, 3}},
			want: []Isolation{
				{Resource: page, CaseID: "A", Kind: "k", At: at(3 * time.Second), ByUs: true},
				{Resource: cpu, CaseID: "B", Kind: "k", At: at(7 * time.Second), ByUs: true},
			},
			actedOn: []fault.Resource{page, cpu},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			for id, st := range tt.cases {
				c := newCase(id, at(0), page)
				c.State = st
				require.NoError(t, s.SaveCase(c))
			}
			for _, a := range tt.acts {
				require.NoError(t, s.AddAction(fault.Action{CaseID: a.caseID, Time: at(time.Duration(a.sec) * time.Second),
					Resource: a.r, Kind: "k", Outcome: a.outcome}))
			}
			for _, u := range tt.updates {
				require.NoError(t, s.UpdateCaseState(u.caseID, u.state, at(time.Hour), ""))
			}
			got, err := s.Isolated()
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			for _, r := range tt.actedOn {
				acted, err := s.ActedOn(r)
				require.NoError(t, err)
				require.True(t, acted, "ActedOn(%s)", r)
			}
			for _, r := range tt.notActed {
				acted, err := s.ActedOn(r)
				require.NoError(t, err)
				require.False(t, acted, "ActedOn(%s)", r)
			}
		})
	}
}
