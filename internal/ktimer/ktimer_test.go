package ktimer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func tick(t *testing.T, k *Ticker) {
	t.Helper()
	select {
	case <-k.C():
	case <-time.After(time.Minute):
		t.Fatal("no tick while armed")
	}
}

// Armed it ticks; stopped it delivers nothing, not even a tick that fell
// due before Stop; armed again it ticks again; Close ends it.
func TestTickerTicksOnlyWhileArmed(t *testing.T) {
	k, err := New()
	require.NoError(t, err)
	require.NoError(t, k.Reset(time.Millisecond))
	tick(t, k)
	tick(t, k)
	// Ticks keep falling due while nobody reads; Stop must drop them all.
	for range 50 {
		require.NoError(t, k.Reset(time.Microsecond))
		require.NoError(t, k.Stop())
		select {
		case <-k.C():
			t.Fatal("a tick after Stop")
		default:
		}
	}
	require.NoError(t, k.Reset(time.Millisecond))
	tick(t, k)
	k.Close()
	_, open := <-k.done
	require.False(t, open, "Close waits for the forwarding goroutine")
}

// A period must be positive: zero would disarm the timerfd silently.
func TestResetWantsAPeriod(t *testing.T) {
	k, err := New()
	require.NoError(t, err)
	defer k.Close()
	require.ErrorContains(t, k.Reset(0), "want a positive duration")
}
