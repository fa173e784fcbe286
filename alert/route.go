package alert

import "slices"

// Route decides which alerts a notifier receives.
type Route struct {
	// MinSeverity drops alerts below it; "" passes everything.
	MinSeverity Severity
	// Transitions, when not empty, is the only transitions passed.
	Transitions []Transition
}

// Match reports whether the route passes a. Test alerts pass every route:
// `alert test` is there to prove the notifier works. The end of a health
// problem passes wherever the problem did, whatever its own severity
// (info): a receiver told of a blind source must hear that it sees again,
// or Alertmanager would re-post it forever. A case's resolution passes
// wherever one of the case's earlier alerts (a.Ends) did, for the same
// reason: a route for warnings hears a page isolated, and must hear it
// repaired.
func (r Route) Match(a Alert) bool {
	if a.Transition == Test {
		return true
	}
	if a.Transition.Resolves() && !slices.Contains(r.Transitions, a.Transition) {
		for _, t := range a.ended() {
			if t != a.Transition && r.Match(Alert{Transition: t, Severity: DefaultSeverity(t)}) {
				return true
			}
		}
	}
	if r.MinSeverity != "" && a.Severity.Rank() < r.MinSeverity.Rank() {
		return false
	}
	return len(r.Transitions) == 0 || slices.Contains(r.Transitions, a.Transition)
}

// Recipients names the notifiers whose route passes a, in config order.
func Recipients(ns []NamedNotifier, a Alert) []string {
	var out []string
	for _, n := range ns {
		if n.Route.Match(a) {
			out = append(out, n.Name)
		}
	}
	return out
}
