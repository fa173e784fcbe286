package store

import (
	"context"
	"fmt"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// Isolation is a resource the store remembers as out of service.
type Isolation struct {
	Resource fault.Resource
	CaseID   string
	Kind     string // the action's kind: "soft-offline", "cpu-offline", ...
	At       time.Time
	// ByUs is false when another actor (kernel CEC, rasdaemon, an admin)
	// isolated it first: we must not undo it, and after a reboot it is
	// theirs to restore, not ours.
	ByUs bool
}

// successful outcomes leave the resource out of service. already-isolated
// counts as ours: the daemon records it when an earlier case of ours did it.
var successful = []fault.Outcome{fault.OutcomeIsolated, fault.OutcomeAlreadyIsolated, fault.OutcomeIsolatedByOther}

// Isolated lists every resource whose most recent successful action
// (isolated, already-isolated, isolated-by-other) belongs to a case that is
// not resolved (repaired, acquitted, closed), oldest first. It is the list
// the daemon re-isolates after a reboot (ByUs only) and counts against its
// budgets.
//
// Only the most recent success decides: once the case that last isolated a
// resource is repaired, the resource is free again even if an older case
// still names it, because a repair means the part was replaced. Failures
// after a success do not remove a resource either: the decision to isolate
// stands until an operator resolves the case.
func (s *Store) Isolated() ([]Isolation, error) {
	args := make([]any, 0, len(successful)+len(resolved))
	for _, o := range successful {
		args = append(args, string(o))
	}
	for _, st := range resolved {
		args = append(args, string(st))
	}
	rows, err := s.r.QueryContext(context.Background(), `
		SELECT resource, case_id, kind, at, outcome FROM (
			SELECT a.*, row_number() OVER (PARTITION BY a.resource ORDER BY a.at DESC, a.id DESC) AS n
			FROM actions a WHERE a.outcome IN (`+placeholders(len(successful))+`)
		) latest JOIN cases c ON c.id = latest.case_id
		WHERE latest.n = 1 AND c.state NOT IN (`+placeholders(len(resolved))+`)
		ORDER BY latest.at, latest.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("querying isolations in %s: %w", s.path, err)
	}
	defer rows.Close()
	var out []Isolation
	for rows.Next() {
		var (
			i                 Isolation
			resource, outcome string
			at                int64
		)
		if err := rows.Scan(&resource, &i.CaseID, &i.Kind, &at, &outcome); err != nil {
			return nil, fmt.Errorf("reading isolations from %s: %w", s.path, err)
		}
		i.Resource, i.At = fault.Resource(resource), fromUnixNano(at)
		i.ByUs = fault.Outcome(outcome) != fault.OutcomeIsolatedByOther
		out = append(out, i)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading isolations from %s: %w", s.path, err)
	}
	return out, nil
}

// ActedOn is the "never act twice" test. It is true when
//   - r is in Isolated(): its most recent success (isolated,
//     already-isolated, isolated-by-other) belongs to an unresolved case
//     (open, isolated or failed), or
//   - an isolation of r failed in a case still open or isolated.
//
// Dry runs, refusals, pauses and not-present never count: nothing was done,
// so a later case may act. A failure inside a case that ended failed does
// not count: the operator was told, and a new diagnosis may try again (the
// kernel's answer can change, e.g. EBUSY on a page that was pinned).
// Resolving the case (repair, acquit, close) frees the resource.
func (s *Store) ActedOn(r fault.Resource) (bool, error) {
	args := []any{string(r)}
	for _, o := range successful {
		args = append(args, string(o))
	}
	for _, st := range resolved {
		args = append(args, string(st))
	}
	args = append(args, string(r), string(fault.OutcomeFailed), string(fault.CaseOpen), string(fault.CaseIsolated))
	var found int
	err := s.r.QueryRowContext(context.Background(), `
		SELECT EXISTS (
			SELECT 1 FROM (
				SELECT case_id FROM actions WHERE resource = ? AND outcome IN (`+placeholders(len(successful))+`)
				ORDER BY at DESC, id DESC LIMIT 1
			) latest JOIN cases c ON c.id = latest.case_id
			WHERE c.state NOT IN (`+placeholders(len(resolved))+`)
		) OR EXISTS (
			SELECT 1 FROM actions a JOIN cases c ON c.id = a.case_id
			WHERE a.resource = ? AND a.outcome = ? AND c.state IN (?, ?)
		)`, args...).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("querying actions on %s in %s: %w", r, s.path, err)
	}
	return found == 1, nil
}
