package daemon

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// Intake pushes jobs however many wait: 5000 go in with no worker taking
// any (a bounded channel of 1024 blocked the main loop there), and come
// out in order.
func TestJobQueueNeverBlocksAndKeepsOrder(t *testing.T) {
	q := newJobQueue()
	const n = 5000
	for i := range n {
		q.push(job{c: fault.Case{ID: string(rune('a' + i%26))}, targets: make([]fault.Resource, i)})
	}
	require.Equal(t, n, q.len())
	<-q.ready // one token while not empty
	for i := range n {
		j, ok := q.pop()
		require.True(t, ok)
		require.Len(t, j.targets, i)
	}
	_, ok := q.pop()
	require.False(t, ok)
	require.Zero(t, q.len())
}
