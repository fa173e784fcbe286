package daemon

import "sync"

// jobQueue hands work to the action worker. push never blocks: intake keeps
// counting errors however slowly actions complete (a bounded channel would
// stop the main loop, and with it the watchdog, once full).
type jobQueue struct {
	mu    sync.Mutex
	items []job
	// ready holds one token while items is not empty.
	ready chan struct{}
}

func newJobQueue() *jobQueue { return &jobQueue{ready: make(chan struct{}, 1)} }

func (q *jobQueue) push(j job) {
	q.mu.Lock()
	q.items = append(q.items, j)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop takes the oldest job, false when there is none.
func (q *jobQueue) pop() (job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return job{}, false
	}
	j := q.items[0]
	q.items[0] = job{}
	q.items = q.items[1:]
	if len(q.items) > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return j, true
}

func (q *jobQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
