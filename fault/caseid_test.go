package fault

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// Case IDs are random (version 4) RFC 9562 UUIDs from a source that never
// blocks (see NewCaseID), distinct, and told apart by the 8-character
// prefix `faulty` shows.
func TestNewCaseID(t *testing.T) {
	seen, prefixes := map[string]bool{}, map[string]int{}
	const n = 10_000
	for range n {
		s := NewCaseID()
		id, err := uuid.Parse(s)
		require.NoError(t, err)
		require.Equal(t, uuid.Version(4), id.Version(), s)
		require.Equal(t, uuid.RFC4122, id.Variant(), s)
		require.False(t, seen[s], "repeated: %s", s)
		seen[s] = true
		prefixes[s[:8]]++
	}
	// 10 000 random 32-bit prefixes collide with probability ~1 %; a
	// time-ordered ID would share its prefix with every other one here.
	require.Greater(t, len(prefixes), n-3)
}
