package daemon

import (
	"sort"
	"sync"
	"time"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/store"
)

// caseBook is the small in-memory picture of the cases that status and
// metrics read: counts by diagnosis and state, and the unresolved cases
// (few: a resolved case leaves the map). Reading it never touches the store
// nor a lock the event path or the action worker hold across I/O.
type caseBook struct {
	mu     sync.Mutex
	counts map[[2]string]int // {diagnosis, state}
	active map[string]CaseSummary
	total  int
}

func newCaseBook() *caseBook {
	return &caseBook{counts: map[[2]string]int{}, active: map[string]CaseSummary{}}
}

// load fills the book from the store at start.
func (b *caseBook) load(st *store.Store) error {
	counts, err := st.CaseCounts()
	if err != nil {
		return err
	}
	open, err := st.Cases(store.CaseFilter{Open: true})
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.counts, b.total = counts, 0
	for _, n := range counts {
		b.total += n
	}
	for _, c := range open {
		b.active[c.ID] = summarize(c)
	}
	return nil
}

func (b *caseBook) add(c fault.Case) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.active[c.ID]; ok {
		return
	}
	b.total++
	b.counts[[2]string{string(c.Diagnosis), string(c.State)}]++
	if !store.Resolved(c.State) {
		b.active[c.ID] = summarize(c)
	}
}

// activeKeys adds the unresolved cases to keys (caseKey): a decision's
// case is here from the moment the worker saves it, even while its store
// write is held after a failure.
func (b *caseBook) activeKeys(keys map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.active {
		keys[caseKey(s.Diagnosis, fault.Resource(s.Suspect))] = true
	}
}

func (b *caseBook) move(id string, st fault.CaseState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.active[id]
	if !ok {
		return // resolved before: the count already moved
	}
	b.counts[[2]string{string(s.Diagnosis), string(s.State)}]--
	s.State = st
	b.counts[[2]string{string(s.Diagnosis), string(s.State)}]++
	if store.Resolved(st) {
		delete(b.active, id)
	} else {
		b.active[id] = s
	}
}

// maxListed bounds the case list status carries; counts cover the rest.
const maxListed = 200

func (b *caseBook) snapshot() (list []CaseSummary, byState map[string]int, total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	byState = map[string]int{}
	for k, n := range b.counts {
		if n > 0 {
			byState[k[1]] += n
		}
	}
	for _, s := range b.active {
		list = append(list, s)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	if len(list) > maxListed {
		list = list[:maxListed]
	}
	return list, byState, b.total
}

func (b *caseBook) countsByDiagnosis() map[[2]string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[[2]string]int, len(b.counts))
	for k, n := range b.counts {
		if n > 0 {
			out[k] = n
		}
	}
	return out
}

// The transition points: every case the daemon stores and every state it
// moves one to goes through these, so what follows a transition (status,
// alerts) hooks in one place.

// storeCase records a new case (alert-only cases, cases the kernel made)
// with its diagnosed alert, in one transaction.
func (d *Daemon) storeCase(c fault.Case) {
	d.cases.add(c)
	d.persist("storing case "+c.ID, func() error { return d.alerts.saveCase(c) })
}

// storeIntent records a decision and the isolations it intends before any
// kernel write, fsync'd, with its diagnosed alert in the same transaction.
func (d *Daemon) storeIntent(c fault.Case, intents []fault.Action) {
	d.cases.add(c)
	d.persist("storing the decision of case "+c.ID, func() error { return d.alerts.saveIntent(d.store, c, intents) })
}

// setCaseState moves a case to st with a note, and queues the alerts of
// that transition in the same transaction.
func (d *Daemon) setCaseState(id string, st fault.CaseState, at time.Time, note string, alerts ...alert.Alert) {
	d.cases.move(id, st)
	d.persist("updating case "+id, func() error { return d.alerts.updateCaseState(id, st, at, note, alerts...) })
}
