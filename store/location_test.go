package store

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// An MCA record's own location (channel) and how its DIMM was named
// survive the history, so explain shows the same evidence after a restart.
func TestEventLocationRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	e := memoryEvent(at(0), 0x2d94040)
	e.Channel, e.LocatedBy, e.DIMMLabel = 2, "MCA record only", "socket 0 UMC 2"
	plain := memoryEvent(at(1), 0x2d95040)
	require.NoError(t, s.AddEvents([]fault.Event{e, plain}))
	got, err := s.Events(EventQuery{})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, 2, got[0].Channel)
	require.Equal(t, "MCA record only", got[0].LocatedBy)
	require.Equal(t, plain.Channel, got[1].Channel)
	require.Equal(t, "", got[1].LocatedBy)
}
