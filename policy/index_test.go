package policy

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestU64IndexMatchesMap drives the open-addressing index and a Go map with
// the same random puts and deletes (keys drawn from a small range so
// clusters, wrap-around and backward shifts all happen).
func TestU64IndexMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := newU64Index()
	ref := map[uint64]uint32{}
	for i := 0; i < 200000; i++ {
		k := rng.Uint64N(5000)
		if i%7 == 0 {
			k = ^uint64(0) - rng.Uint64N(3) // extreme keys hash too
		}
		switch rng.IntN(3) {
		case 0, 1:
			x.put(k, uint32(i))
			ref[k] = uint32(i)
		case 2:
			x.del(k)
			delete(ref, k)
		}
		if i%1000 == 0 {
			require.Equal(t, len(ref), x.len())
			for rk, rv := range ref {
				got, ok := x.get(rk)
				require.True(t, ok, "key %d lost at step %d", rk, i)
				require.Equal(t, rv, got)
			}
		}
		_, ok := x.get(k)
		_, want := ref[k]
		require.Equal(t, want, ok)
	}
}
