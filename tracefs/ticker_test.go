package tracefs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The sweep's ticker keeps calling until its context ends, then returns.
func TestTickEveryTicksUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ticks := make(chan struct{}, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tickEvery(ctx, time.Millisecond, func() {
			select {
			case ticks <- struct{}{}:
			default:
			}
		}, func(err error) { t.Errorf("fell back to a runtime timer: %v", err) })
	}()
	for i := 0; i < 3; i++ {
		select {
		case <-ticks:
		case <-time.After(10 * time.Second):
			t.Fatalf("tick %d never came", i+1)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("tickEvery did not return after its context ended")
	}
}

// A timerfd tick is read once per expiry; Close ends a wait that would
// otherwise last an hour.
func TestKernelTicker(t *testing.T) {
	k, err := newKernelTicker(time.Millisecond)
	require.NoError(t, err)
	require.True(t, k.Wait())
	require.True(t, k.Wait())
	k.Close()
	require.False(t, k.Wait())

	k, err = newKernelTicker(time.Hour)
	require.NoError(t, err)
	ended := make(chan bool, 1)
	go func() { ended <- k.Wait() }()
	k.Close()
	select {
	case ok := <-ended:
		require.False(t, ok)
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not end the wait")
	}
}

// pollNow reports what poll(2) does, without waiting.
func TestPollNow(t *testing.T) {
	require.NoError(t, pollNow(nil))
	w, fd := pollablePipe(t)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	require.NoError(t, pollNow(fds))
	require.Zero(t, fds[0].Revents&unix.POLLIN, "empty pipe")
	_, err := w.Write([]byte{1})
	require.NoError(t, err)
	require.NoError(t, pollNow(fds))
	require.NotZero(t, fds[0].Revents&unix.POLLIN, "a byte waiting")
}
