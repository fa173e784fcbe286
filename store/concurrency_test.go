package store

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// Readers run while the writer commits batches: in WAL mode they neither
// block nor fail, and each sees whole batches only.
func TestConcurrentReadsWhileWriting(t *testing.T) {
	s, path := openTemp(t)
	ro, err := OpenReadOnly(path)
	require.NoError(t, err)
	defer ro.Close()

	const batches, size = 40, 250
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for _, reader := range []*Store{s, ro, ro} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for {
				select {
				case <-done:
					return
				default:
				}
				evs, err := reader.Events(EventQuery{Class: "memory"})
				if err != nil {
					fail(err)
					return
				}
				if len(evs)%size != 0 || len(evs) < last {
					fail(fmt.Errorf("reader saw %d events after %d: a partial batch", len(evs), last))
					return
				}
				last = len(evs)
				if _, err := reader.Isolated(); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	evs := make([]fault.Event, size)
	for b := range batches {
		for i := range evs {
			evs[i] = memoryEvent(at(time.Duration(b*size+i)*time.Millisecond), uint64(i)*fault.PageSize)
		}
		require.NoError(t, s.AddEvents(evs))
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errs:
		require.NoError(t, err)
	default:
	}
	all, err := ro.Events(EventQuery{})
	require.NoError(t, err)
	require.Len(t, all, batches*size)
}
