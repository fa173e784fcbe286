// Package alertmanager posts alerts to Alertmanager's v2 API
// (POST /api/v2/alerts), which then groups, silences and routes them.
//
// A case is one Alertmanager alert per severity it reached, labelled
// alertname, severity, instance (the host), resource (the suspect), fru and
// case. While the case stays open Run re-posts it every repost interval
// with endsAt three intervals ahead, so Alertmanager never resolves an
// open case on its own; the repair, acquit or replace transition posts
// endsAt=now for every severity, which resolves it. Health problems
// (source-blind, source-degraded, unarmed) fire the same way until their
// -cleared transition resolves them.
package alertmanager

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/selfprotect/selfprotect/alert"
)

// Notifier posts to one Alertmanager.
type Notifier struct {
	to     alert.Endpoint
	token  alert.Secret
	client *http.Client
	repost time.Duration
	now    func() time.Time

	mu sync.Mutex
	// open holds the last posted alert of each open case and severity, for
	// re-posting. It is memory only: after a restart the daemon's first
	// transition of a case (or Track) fills it again.
	open map[string]map[alert.Severity]alert.Alert
}

// New builds the notifier; now is the clock (time.Now when nil).
func New(cfg alert.AlertmanagerConfig, now func() time.Time) (*Notifier, error) {
	c, err := alert.HTTPClient(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	repost := cfg.RepostInterval
	if repost <= 0 {
		repost = alert.DefaultRepost
	}
	return &Notifier{
		to: cfg.URL.Endpoint().Join("api", "v2", "alerts"), token: cfg.BearerToken, client: c,
		repost: repost, now: now, open: map[string]map[alert.Severity]alert.Alert{},
	}, nil
}

// Postable is one element of the v2 API's request body.
type Postable struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitempty"`
	EndsAt       time.Time         `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// AlertName is the alertname label: one name for every case, so
// Alertmanager routes can match it, and one per kind of case-less alert.
// The end of a health problem carries the problem's name: that is what
// it resolves.
func AlertName(a alert.Alert) string {
	t := a.Transition
	if p, ok := t.Clears(); ok {
		t = p
	}
	switch t {
	case alert.Diagnosed, alert.Isolated, alert.IsolationFailed, alert.Refused, alert.StormStarted, alert.WouldIsolate,
		alert.Repaired, alert.Acquitted, alert.Replaced, alert.StormEnded:
		return "SelfprotectCase"
	}
	var b strings.Builder
	b.WriteString("Selfprotect")
	for _, part := range strings.Split(string(t), "-") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// keepsOpen lists the transitions after which their subject is still open
// and must stay firing: a case not yet resolved, a health problem not yet
// cleared.
func keepsOpen(t alert.Transition) bool {
	switch t {
	case alert.Diagnosed, alert.Isolated, alert.IsolationFailed, alert.Refused, alert.StormStarted, alert.WouldIsolate:
		return true
	}
	_, problem := t.ClearedBy()
	return problem
}

// Labels are the alert's identity in Alertmanager.
func Labels(a alert.Alert, sev alert.Severity) map[string]string {
	l := map[string]string{
		"alertname": AlertName(a), "severity": string(sev), "instance": a.Host, "case": a.Case,
	}
	if a.Suspect != "" {
		l["resource"] = a.Suspect
	}
	if a.FRU != "" {
		l["fru"] = a.FRU
	}
	return l
}

func (n *Notifier) postable(a alert.Alert, sev alert.Severity, endsAt time.Time) Postable {
	ann := map[string]string{
		"summary": a.Summary, "description": a.Title(), "transition": string(a.Transition),
		"alert_id": a.ID, "evidence_count": strconv.Itoa(a.EvidenceCount),
	}
	if a.Undo != "" {
		ann["undo"] = a.Undo
	}
	if len(a.Evidence) > 0 {
		ann["evidence"] = strings.Join(a.Evidence, "\n")
	}
	return Postable{Labels: Labels(a, sev), Annotations: ann, StartsAt: a.Time, EndsAt: endsAt}
}

// Notify posts a firing alert, or resolves the case.
func (n *Notifier) Notify(ctx context.Context, a alert.Alert) (bool, error) {
	now := n.now()
	var body []Postable
	switch {
	case a.Transition.Resolves():
		// Every severity, not just those remembered: after a restart the
		// memory is empty, and resolving an alert that never fired is a
		// no-op for Alertmanager.
		for _, sev := range alert.Severities() {
			body = append(body, n.postable(a, sev, now))
		}
	default:
		body = append(body, n.postable(a, a.Severity, now.Add(3*n.repost)))
	}
	retry, err := alert.PostJSON(ctx, n.client, n.to, n.token, a.ID, body)
	if err != nil {
		return retry, err
	}
	n.remember(a)
	return false, nil
}

// Track makes Run re-post a case opened before a restart.
func (n *Notifier) Track(a alert.Alert) { n.remember(a) }

func (n *Notifier) remember(a alert.Alert) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case a.Transition.Resolves():
		delete(n.open, a.Case)
	case keepsOpen(a.Transition):
		if n.open[a.Case] == nil {
			n.open[a.Case] = map[alert.Severity]alert.Alert{}
		}
		n.open[a.Case][a.Severity] = a
	}
}

// Repost posts every open case again with a fresh endsAt.
func (n *Notifier) Repost(ctx context.Context) (int, error) {
	n.mu.Lock()
	var body []Postable
	endsAt := n.now().Add(3 * n.repost)
	for _, bySev := range n.open {
		for sev, a := range bySev {
			body = append(body, n.postable(a, sev, endsAt))
		}
	}
	n.mu.Unlock()
	if len(body) == 0 {
		return 0, nil
	}
	if _, err := alert.PostJSON(ctx, n.client, n.to, n.token, "", body); err != nil {
		return 0, fmt.Errorf("re-posting %d open alerts: %w", len(body), err)
	}
	return len(body), nil
}

// Run re-posts open cases every repost interval until ctx ends. A failed
// re-post is reported to onErr and tried again at the next tick; the
// endsAt margin of three intervals rides out two misses.
func (n *Notifier) Run(ctx context.Context, onErr func(error)) {
	t := time.NewTicker(n.repost)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, n.repost)
			if _, err := n.Repost(rctx); err != nil && onErr != nil {
				onErr(err)
			}
			cancel()
		}
	}
}
