package store

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// Case IDs typed by an operator: any string gives a case, ErrNotFound or
// ErrAmbiguous, never a panic or a database error.
func FuzzCaseLookup(f *testing.F) {
	s, _ := openTemp(f)
	for _, id := range []string{"5e4c1a7b-1111", "5e4c1a7b-2222", "9d0b77aa-3333"} {
		require.NoError(f, s.SaveCase(newCase(id, t0, fault.CPU(1))))
	}
	for _, seed := range []string{"", "5e4c1a7b", "9D0B77AA-3", "%", "_______%", "'; DROP TABLE cases; --", "\x00\xff"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		c, err := s.Case(id)
		if err != nil {
			require.True(t, errors.Is(err, ErrNotFound) || errors.Is(err, ErrAmbiguous), "unexpected error %v", err)
			return
		}
		require.NotEmpty(t, c.ID)
	})
}

// Event filters typed by an operator: bad ones are errors, none panics.
func FuzzEventQuery(f *testing.F) {
	s, _ := openTemp(f)
	require.NoError(f, s.AddEvents([]fault.Event{memoryEvent(t0, 0x2d94000), cacheEvent(t0, 3)}))
	f.Add("memory", "page:0x2d94", 0)
	f.Add("", "dimm:mc0/CPU_SrcID#0_Ha#0_Chan#1_DIMM#0", 1)
	f.Add("cache", "cpu:3", -1)
	f.Add("x", "page:0xffffffffffffffff", 5)
	f.Add("", "dimm:mc/", 0)
	f.Fuzz(func(t *testing.T, class, resource string, limit int) {
		evs, err := s.Events(EventQuery{Class: class, Resource: fault.Resource(resource), Limit: limit})
		if err == nil && limit > 0 {
			require.LessOrEqual(t, len(evs), limit)
		}
	})
}

// Evidence JSON comes back from a file anyone with root could have edited.
func FuzzUnmarshalEvidence(f *testing.F) {
	ev := memoryEvent(t0, 0x2d94000)
	good, err := marshalEvidence([]fault.Evidence{fault.EvidenceOf(&ev)})
	require.NoError(f, err)
	f.Add(good)
	f.Add(`[{"time":"x"}]`)
	f.Add(`[{"time":"2025-01-01T00:00:00Z","severity":"corrected","class":"memory","status":"0x1","addr":"-1"}]`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, s string) {
		out, err := unmarshalEvidence(s)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same thing.
		again, err := marshalEvidence(out)
		require.NoError(t, err)
		back, err := unmarshalEvidence(again)
		require.NoError(t, err)
		require.Equal(t, out, back)
	})
}
