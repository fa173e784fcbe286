package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func TestCaseRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	cpuCase := fault.Case{
		ID: "0f1e2d3c-4b5a-6978-8877-665544332211", Opened: at(time.Hour), Rule: "core-cache-ce",
		Diagnosis: fault.DiagOfflineCPU, Suspect: fault.CPU(6), Also: []fault.Resource{fault.CPU(38)},
		FRU: "socket:1", State: fault.CaseIsolated, Summary: "5 L1 CEs",
		Evidence: []fault.Evidence{{
			Time: at(59 * time.Minute), Source: fault.SourceTraceMCE, Severity: fault.SeverityCorrected,
			Class: fault.ClassCache, Count: 1, CPU: 6, Bank: 1, Status: 0x9c00000000000090,
			Addr: 0xffffffffffffffff, Summary: "corrected cache x1 cpu=6 bank=1",
		}},
	}
	tests := []fault.Case{
		newCase("3f2a9c1e-0000-4000-8000-000000000001", at(0), fault.Page(0x2d94)),
		cpuCase,
		{ID: "empty", State: fault.CaseOpen}, // zero times, no evidence
	}
	for _, c := range tests {
		require.NoError(t, s.SaveCase(c))
	}
	for _, want := range tests {
		got, err := s.Case(want.ID)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	// Evidence is JSON with RFC 3339 times and hex registers, readable in
	// the sqlite3 shell.
	var raw string
	require.NoError(t, s.r.QueryRow(`SELECT evidence FROM cases WHERE id = ?`, cpuCase.ID).Scan(&raw))
	require.Contains(t, raw, `"time":"2025-03-14T10:25:53.589793238Z"`)
	require.Contains(t, raw, `"status":"0x9c00000000000090"`)
}

func TestCaseLookup(t *testing.T) {
	s, _ := openTemp(t)
	ids := []string{
		"5e4c1a7b-1111-4000-8000-000000000001",
		"5e4c1a7b-2222-4000-8000-000000000002",
		"9d0b77aa-3333-4000-8000-000000000003",
		"short",
	}
	for i, id := range ids {
		require.NoError(t, s.SaveCase(newCase(id, at(time.Duration(i)*time.Minute), fault.CPU(i+1))))
	}
	tests := []struct {
		name    string
		query   string
		want    string
		wantErr error
	}{
		{name: "full ID", query: ids[0], want: ids[0]},
		{name: "8-character prefix", query: "9d0b77aa", want: ids[2]},
		{name: "prefix in upper case", query: "9D0B77AA-33", want: ids[2]},
		{name: "longer prefix resolves the tie", query: "5e4c1a7b-2", want: ids[1]},
		{name: "exact short ID", query: "short", want: ids[3]},
		{name: "ambiguous prefix", query: "5e4c1a7b", wantErr: ErrAmbiguous},
		{name: "too short a prefix", query: "9d0b77a", wantErr: ErrNotFound},
		{name: "no such case", query: "deadbeef", wantErr: ErrNotFound},
		{name: "empty", query: "", wantErr: ErrNotFound},
		{name: "like wildcards are literal", query: "5e4c1a7b%", wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Case(tt.query)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got.ID)
		})
	}
}

func TestUpdateCaseState(t *testing.T) {
	s, _ := openTemp(t)
	c := newCase("aaaaaaaa-0001", at(0), fault.Page(0x10))
	require.NoError(t, s.SaveCase(c))
	require.NoError(t, s.UpdateCaseState(c.ID, fault.CaseIsolated, at(time.Second), ""))
	require.NoError(t, s.UpdateCaseState(c.ID, fault.CaseRepaired, at(time.Hour), "DIMM replaced, ticket 42"))

	got, err := s.Case(c.ID)
	require.NoError(t, err)
	require.Equal(t, fault.CaseRepaired, got.State)

	// Re-saving a stale copy (state open) updates the rest but not the state.
	c.Summary = "more evidence"
	require.NoError(t, s.SaveCase(c))
	got, err = s.Case(c.ID)
	require.NoError(t, err)
	require.Equal(t, fault.CaseRepaired, got.State)
	require.Equal(t, "more evidence", got.Summary)

	hist, err := s.CaseHistory(c.ID)
	require.NoError(t, err)
	require.Equal(t, []StateChange{
		{At: at(0), State: fault.CaseOpen},
		{At: at(time.Second), State: fault.CaseIsolated},
		{At: at(time.Hour), State: fault.CaseRepaired, Note: "DIMM replaced, ticket 42"},
	}, hist)

	require.ErrorIs(t, s.UpdateCaseState("nope", fault.CaseClosed, at(0), ""), ErrNotFound)
	require.ErrorContains(t, s.UpdateCaseState(c.ID, "fixed", at(0), ""), `unknown case state "fixed"`)
	require.ErrorContains(t, s.SaveCase(fault.Case{ID: "x", State: "weird"}), `unknown case state "weird"`)
	require.ErrorContains(t, s.SaveCase(fault.Case{State: fault.CaseOpen}), "empty ID")
}

func TestCasesFilter(t *testing.T) {
	s, _ := openTemp(t)
	states := []fault.CaseState{fault.CaseIsolated, fault.CaseOpen, fault.CaseRepaired, fault.CaseFailed, fault.CaseAcquit, fault.CaseClosed}
	// Saved out of order: Cases sorts by opened time.
	for i := len(states) - 1; i >= 0; i-- {
		c := newCase(string(states[i])+"-case", at(time.Duration(i)*time.Minute), fault.CPU(i+1))
		c.State = states[i]
		require.NoError(t, s.SaveCase(c))
	}
	tests := []struct {
		name string
		f    CaseFilter
		want []string
	}{
		{"all, oldest first", CaseFilter{}, []string{"isolated-case", "open-case", "repaired-case", "failed-case", "acquitted-case", "closed-case"}},
		{"open means unresolved", CaseFilter{Open: true}, []string{"isolated-case", "open-case", "failed-case"}},
		{"states", CaseFilter{States: []fault.CaseState{fault.CaseRepaired, fault.CaseClosed}}, []string{"repaired-case", "closed-case"}},
		{"both apply", CaseFilter{Open: true, States: []fault.CaseState{fault.CaseRepaired, fault.CaseFailed}}, []string{"failed-case"}},
		{"none", CaseFilter{States: []fault.CaseState{"nothing"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cases, err := s.Cases(tt.f)
			require.NoError(t, err)
			var got []string
			for _, c := range cases {
				got = append(got, c.ID)
			}
			require.Equal(t, tt.want, got)
		})
	}
}
