package daemon

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/alert"
)

// problem is one condition that leaves the daemon blind or half-blind:
// status lists its text, alerts are keyed on its source and kind, so a
// count growing inside the text ("cpu1: 3 events overrun", then 9) is the
// same problem.
type problem struct {
	// source is the source (or source group) it concerns, "" for the
	// daemon as a whole.
	source string
	// kind is alert.SourceBlind, alert.SourceDegraded or alert.Unarmed.
	kind alert.Transition
	text string
}

func problemTexts(ps []problem) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.text)
	}
	return out
}

// problemKey is what one health alert episode is about.
type problemKey struct {
	source string
	kind   alert.Transition
}

// healthSubject is the outbox subject of an episode that began at since:
// "health:SOURCE:KIND:UNIXNANO" (SOURCE "daemon" for the whole daemon),
// unique per episode, parsed back by healthKey after a restart.
func healthSubject(k problemKey, since time.Time) string {
	return alert.Subject("health", cmp.Or(k.source, "daemon"), string(k.kind), strconv.FormatInt(since.UnixNano(), 10))
}

// healthKey reads the key back from an episode's alert. A subject of
// another shape (written by an older version) keys on itself: no current
// problem matches it, so the first check clears it.
func healthKey(a alert.Alert) problemKey {
	parts := strings.Split(a.Case, ":")
	if len(parts) != 4 || parts[0] != "health" || parts[2] != string(a.Transition) {
		return problemKey{source: a.Case, kind: a.Transition}
	}
	if _, err := strconv.ParseInt(parts[3], 10, 64); err != nil {
		return problemKey{source: a.Case, kind: a.Transition}
	}
	if parts[1] == "daemon" {
		parts[1] = ""
	}
	return problemKey{source: parts[1], kind: a.Transition}
}

// health raises one alert when a problem begins and its -cleared
// counterpart, with the same subject, when it ends. Episodes open at the
// last stop were restored from the outbox at start: still there, they are
// not raised again; gone, they are cleared now. Main loop only (prune
// reads the open subjects under healthMu).
func (a *alerter) health(ps []problem) {
	now, host := a.now(), a.host() // before healthMu: a.mu is taken first elsewhere
	current := map[problemKey][]string{}
	var order []problemKey
	for _, p := range ps {
		k := problemKey{p.source, p.kind}
		if _, seen := current[k]; !seen {
			order = append(order, k)
		}
		current[k] = append(current[k], p.text)
	}
	a.healthMu.Lock()
	var out []alert.Alert
	for _, k := range order {
		if _, ok := a.open[k]; ok {
			continue
		}
		subject := healthSubject(k, now)
		al := alert.Alert{
			ID: alert.StableID(host, subject, k.kind), Case: subject, Transition: k.kind, Severity: alert.DefaultSeverity(k.kind),
			Summary: strings.Join(current[k], "; "), Host: host, Time: now,
		}
		a.open[k] = al
		out = append(out, al)
	}
	var ended []problemKey
	for k := range a.open {
		if _, ok := current[k]; !ok {
			ended = append(ended, k)
		}
	}
	slices.SortFunc(ended, func(x, y problemKey) int { return cmp.Or(cmp.Compare(x.source, y.source), cmp.Compare(x.kind, y.kind)) })
	for _, k := range ended {
		al := a.open[k]
		delete(a.open, k)
		end, ok := al.Transition.ClearedBy()
		if !ok {
			continue
		}
		out = append(out, alert.Alert{
			// The problem's host and subject, so the pair matches even if
			// the configured host name changed across a restart.
			ID: alert.StableID(al.Host, al.Case, end), Case: al.Case, Transition: end, Severity: alert.DefaultSeverity(end),
			Summary: fmt.Sprintf("cleared after %s: %s", now.Sub(al.Time).Round(time.Second), al.Summary), Host: al.Host, Time: now,
		})
	}
	a.healthMu.Unlock()
	a.raise(out...)
}

// restoreHealth loads the problems the outbox announced and never cleared.
func (a *alerter) restoreHealth() []alert.Alert {
	open, err := alert.OpenProblems(a.store)
	if err != nil {
		a.log.WithError(err).Error("reading open health alerts; a problem still there may be announced again")
	}
	a.healthMu.Lock()
	defer a.healthMu.Unlock()
	for _, al := range open {
		k := healthKey(al)
		if _, dup := a.open[k]; dup {
			k = problemKey{source: al.Case, kind: al.Transition}
		}
		a.open[k] = al
	}
	if len(open) > 0 {
		a.log.WithField("problems", len(open)).Info("health problems announced before the restart: not announced again while they last, cleared when they are over")
	}
	return open
}

// openSubjects are the subjects of the problems announced and not cleared,
// whose outbox rows pruning keeps.
func (a *alerter) openSubjects() []string {
	a.healthMu.Lock()
	defer a.healthMu.Unlock()
	out := make([]string, 0, len(a.open))
	for _, al := range a.open {
		out = append(out, al.Case)
	}
	slices.Sort(out)
	return out
}
