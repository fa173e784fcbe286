package replay

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/selfprotect/selfprotect/store"
)

// StoreFile is the daemon's database inside its state directory.
const StoreFile = "selfprotect.db"

// ReadStore reads the event history of one daemon's state directory as the
// host's raw records (the daemon stores every record as it came, before
// count-once), through the store's read-only opener, so it works while the
// daemon runs. Each record's time is its own (Recorded) when the source
// gave one, else when the daemon received it. The history covers what the
// store kept: events older than its retention are gone, and events a storm
// kept out of the history (counted in `status`) are missing.
func ReadStore(dir, host string) ([]Record, error) {
	path := filepath.Join(dir, StoreFile)
	st, err := store.OpenReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	evs, err := st.Events(store.EventQuery{})
	if err != nil {
		return nil, err
	}
	recs := make([]Record, len(evs))
	for i, ev := range evs {
		if !ev.Recorded.IsZero() {
			ev.Received = ev.Recorded
		} else {
			ev.Recorded = ev.Received
		}
		recs[i] = Record{Line: i + 1, Host: host, Event: ev}
	}
	slices.SortStableFunc(recs, func(a, b Record) int { return a.Event.Received.Compare(b.Event.Received) })
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: the store holds no events", path)
	}
	return recs, nil
}
