package store

import (
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

func intent(id string, r fault.Resource, d time.Duration) fault.Action {
	return fault.Action{CaseID: id, Time: at(d), Resource: r, Kind: "soft-offline", Outcome: fault.OutcomeIntended}
}

func TestUnsettledIntents(t *testing.T) {
	pA, pB := fault.Page(0xa), fault.Page(0xb)
	for _, tc := range []struct {
		name string
		// after runs once the intents on pA and pB of case "c1" are saved.
		after func(t *testing.T, s *Store)
		want  []fault.Resource
	}{
		{"crash right after the intent", func(*testing.T, *Store) {}, []fault.Resource{pA, pB}},
		{"one outcome recorded", func(t *testing.T, s *Store) {
			require.NoError(t, s.AddAction(fault.Action{CaseID: "c1", Time: at(time.Second), Resource: pA, Kind: "soft-offline", Outcome: fault.OutcomeIsolated}))
		}, []fault.Resource{pB}},
		{"a failure settles too", func(t *testing.T, s *Store) {
			for _, r := range []fault.Resource{pA, pB} {
				require.NoError(t, s.AddAction(fault.Action{CaseID: "c1", Time: at(time.Second), Resource: r, Kind: "soft-offline", Outcome: fault.OutcomeFailed}))
			}
		}, nil},
		{"a resolved case is not redone", func(t *testing.T, s *Store) {
			require.NoError(t, s.UpdateCaseState("c1", fault.CaseAcquit, at(time.Second), "operator"))
		}, nil},
		{"a new intent after an outcome is unsettled again", func(t *testing.T, s *Store) {
			require.NoError(t, s.AddAction(fault.Action{CaseID: "c1", Time: at(time.Second), Resource: pA, Kind: "soft-offline", Outcome: fault.OutcomeIsolated}))
			require.NoError(t, s.SaveIntent(newCase("c1", t0, pA), []fault.Action{intent("c1", pA, 2*time.Second)}))
		}, []fault.Resource{pB, pA}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openTemp(t)
			c := newCase("c1", t0, pA)
			c.Also = []fault.Resource{pB}
			require.NoError(t, s.SaveIntent(c, []fault.Action{intent("c1", pA, 0), intent("c1", pB, 0)}))
			got, err := s.Case("c1")
			require.NoError(t, err)
			require.Equal(t, fault.CaseOpen, got.State)
			tc.after(t, s)
			un, err := s.Unsettled()
			require.NoError(t, err)
			var rs []fault.Resource
			for _, a := range un {
				rs = append(rs, a.Resource)
			}
			require.Equal(t, tc.want, rs)
		})
	}
}

func TestSaveIntentIsAtomic(t *testing.T) {
	s, _ := openTemp(t)
	bad := intent("other", fault.Page(0xa), 0)
	require.Error(t, s.SaveIntent(newCase("c1", t0, fault.Page(0xa)), []fault.Action{bad}))
	_, err := s.Case("c1")
	require.ErrorIs(t, err, ErrNotFound, "the case must not be stored without its intent")
}

func TestCaseCounts(t *testing.T) {
	s, _ := openTemp(t)
	require.NoError(t, s.SaveCase(newCase("c1", t0, fault.Page(1))))
	require.NoError(t, s.SaveCase(newCase("c2", t0, fault.Page(2))))
	require.NoError(t, s.UpdateCaseState("c2", fault.CaseIsolated, at(time.Second), ""))
	n, err := s.CaseCounts()
	require.NoError(t, err)
	d := string(fault.DiagSoftOfflinePage)
	require.Equal(t, map[[2]string]int{{d, "open"}: 1, {d, "isolated"}: 1}, n)
}

// The writer connection is back on synchronous=NORMAL after an intent.
func TestSaveIntentRestoresSynchronous(t *testing.T) {
	s, _ := openTemp(t)
	require.NoError(t, s.SaveIntent(newCase("c1", t0, fault.Page(0xa)), []fault.Action{intent("c1", fault.Page(0xa), 0)}))
	var mode int
	require.NoError(t, s.w.QueryRow(`PRAGMA synchronous`).Scan(&mode))
	require.Equal(t, 1, mode, "NORMAL")
}

// A synced write commits with synchronous=FULL even while other synced
// and plain writes run at the same time: the pragma and the transaction
// run on the writer's one connection, in one piece.
func TestWriteSyncedIsFullUnderConcurrency(t *testing.T) {
	s, _ := openTemp(t)
	const writers, rounds = 3, 30
	errs := make(chan error, writers+1)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				id := fmt.Sprintf("c%d-%d", w, i)
				err := s.WriteSynced("test", func(tx *sql.Tx) error {
					var mode int
					if err := tx.QueryRow(`PRAGMA synchronous`).Scan(&mode); err != nil {
						return err
					}
					if mode != 2 {
						return fmt.Errorf("%s committed with synchronous=%d, want 2 (FULL)", id, mode)
					}
					return s.SaveIntentTx(tx, newCase(id, t0, fault.Page(uint64(w*rounds+i))), nil)
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range rounds {
			if err := s.AddEvents([]fault.Event{memoryEvent(at(time.Duration(i)*time.Second), 0x1000)}); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var mode int
	require.NoError(t, s.w.QueryRow(`PRAGMA synchronous`).Scan(&mode))
	require.Equal(t, 1, mode, "NORMAL")
	cases, err := s.Cases(CaseFilter{})
	require.NoError(t, err)
	require.Len(t, cases, writers*rounds)
}
