package daemon

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func TestIsolatedSetCountsPages(t *testing.T) {
	type step struct {
		add    bool
		r      fault.Resource
		pages  uint64
		member bool
	}
	p1, p2, cpu := fault.Page(0x10), fault.Page(0x11), fault.CPU(3)
	steps := []step{
		{true, p1, 1, true},
		{true, p1, 1, true}, // twice: once
		{true, cpu, 1, true},
		{true, p2, 2, true},
		{false, p1, 1, false},
		{false, p1, 1, false}, // not there: nothing
		{false, cpu, 1, false},
		{false, p2, 0, false},
	}
	s := newIsolatedSet()
	for i, st := range steps {
		if st.add {
			s.add(st.r)
		} else {
			s.remove(st.r)
		}
		require.Equal(t, st.pages, s.pages, "step %d", i)
		require.Equal(t, st.member, s.has(st.r), "step %d", i)
	}
}
