// Package alert tells humans about case transitions. It holds the seam every
// integration implements (Notifier), the alert value they receive, the
// `alerts:` section of the configuration, per-notifier routing, and the
// dispatcher that drains the durable outbox kept in the store.
//
// Integrations live in subpackages (alert/email, alert/snmp,
// alert/alertmanager, alert/webhook, alert/exec) and know only this package;
// alert/notifiers builds them from a Config. Retrying and deduplication are
// the dispatcher's and the outbox's job, never a notifier's.
package alert

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Transition is the lifecycle step an alert reports. Alerts are keyed to
// transitions, not to raw events: a storm of errors is one alert.
type Transition string

const (
	Diagnosed       Transition = "diagnosed"        // a case was opened
	Isolated        Transition = "isolated"         // its suspect is out of service
	IsolationFailed Transition = "isolation-failed" // the kernel refused or verification failed
	Refused         Transition = "refused"          // a budget or safety rule forbade the isolation
	BudgetExhausted Transition = "budget-exhausted" // a budget is used up: later cases cannot act
	StormStarted    Transition = "storm-started"
	StormEnded      Transition = "storm-ended"
	SourceBlind     Transition = "source-blind"    // a source stopped delivering (tracing off, instance removed)
	SourceDegraded  Transition = "source-degraded" // a source lost events (overruns, drops)
	Unarmed         Transition = "unarmed"         // the daemon runs without a working source
	Repaired        Transition = "repaired"
	Acquitted       Transition = "acquitted"
	Replaced        Transition = "replaced"
	OutboxOverflow  Transition = "outbox-overflow" // alerts were dropped because the outbox was full
	Test            Transition = "test"            // `selfprotect alert test`

	// The health problems' ends, raised with the problem's subject so a
	// receiver pairs them (Alertmanager resolves, SNMP managers clear).
	SourceBlindCleared    Transition = "source-blind-cleared"
	SourceDegradedCleared Transition = "source-degraded-cleared"
	UnarmedCleared        Transition = "unarmed-cleared"
	// WouldIsolate is dry-run's isolated: budgets and safety rules let
	// the isolation through, and only the mode kept it from the kernel.
	WouldIsolate Transition = "would-isolate"
)

// Transitions lists every transition, in the order of the MIB's
// notifications (an SNMP trap's OID is root.0.(index+1)): append only.
var Transitions = []Transition{
	Diagnosed, Isolated, IsolationFailed, Refused, BudgetExhausted,
	StormStarted, StormEnded, SourceBlind, SourceDegraded, Unarmed,
	Repaired, Acquitted, Replaced, OutboxOverflow, Test,
	SourceBlindCleared, SourceDegradedCleared, UnarmedCleared, WouldIsolate,
}

// cleared pairs each health problem with the transition that ends it.
var cleared = map[Transition]Transition{
	SourceBlind: SourceBlindCleared, SourceDegraded: SourceDegradedCleared, Unarmed: UnarmedCleared,
}

// ClearedBy is the transition that ends problem t; ok is false when t is
// not a problem that clears (a case's transitions end with repaired and
// its kin instead).
func (t Transition) ClearedBy() (Transition, bool) {
	c, ok := cleared[t]
	return c, ok
}

// Clears is the problem transition t ends; ok is false when t ends none.
func (t Transition) Clears() (Transition, bool) {
	for p, c := range cleared {
		if c == t {
			return p, true
		}
	}
	return "", false
}

// ended is what a resolving alert ends: the health problem its transition
// clears, or the case's (or storm's) earlier transitions it carries.
func (a Alert) ended() []Transition {
	if p, ok := a.Transition.Clears(); ok {
		return []Transition{p}
	}
	return a.Ends
}

// Valid reports whether t is one of Transitions.
func (t Transition) Valid() bool { return slices.Contains(Transitions, t) }

// Resolves reports whether t ends what an earlier alert of the same subject
// announced, so receivers with a notion of "resolved" (Alertmanager) can
// close it.
func (t Transition) Resolves() bool {
	switch t {
	case Repaired, Acquitted, Replaced, StormEnded:
		return true
	}
	_, ok := t.Clears()
	return ok
}

// Severity orders alerts for routing.
type Severity string

const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

var severities = []Severity{SeverityInfo, SeverityWarning, SeverityCritical}

// Severities lists the severities from least to most urgent.
func Severities() []Severity { return slices.Clone(severities) }

// Rank is the severity's place in Severities, -1 if unknown.
func (s Severity) Rank() int { return slices.Index(severities, s) }

// DefaultSeverity is the severity a transition carries unless its producer
// says otherwise.
func DefaultSeverity(t Transition) Severity {
	switch t {
	case IsolationFailed, BudgetExhausted, SourceBlind, Unarmed, OutboxOverflow:
		return SeverityCritical
	case Diagnosed, Isolated, Refused, StormStarted, SourceDegraded, WouldIsolate:
		return SeverityWarning
	}
	return SeverityInfo
}

// Alert is what a notifier receives. Every field is plain data so it can be
// stored in the outbox as JSON and rebuilt after a restart unchanged.
type Alert struct {
	// ID is stable for one (subject, transition): receivers dedupe on it,
	// which is what makes "re-sent at most once after a crash" harmless.
	ID string `json:"id"`
	// Case is the case UUID; for alerts about no case (a source going
	// blind, the outbox overflowing) it is the subject those are keyed on,
	// like "source:tracefs" — see Subject.
	Case       string     `json:"case"`
	Transition Transition `json:"transition"`
	Severity   Severity   `json:"severity"`
	// Suspect is the resource to disable ("page:0x2d94", "cpu:3").
	Suspect string `json:"suspect,omitempty"`
	// FRU is what a technician replaces: DIMM label, location, CPU, socket.
	FRU     string `json:"fru,omitempty"`
	Summary string `json:"summary"`
	// EvidenceCount is how many errors convinced the engine; Evidence is
	// their table, one line each, possibly truncated to what fits.
	EvidenceCount int      `json:"evidence_count"`
	Evidence      []string `json:"evidence,omitempty"`
	Host          string   `json:"host"`
	// Undo is the shell command reversing the action, "" when none.
	Undo string    `json:"undo,omitempty"`
	Time time.Time `json:"time"`
	// Ends, on an alert that resolves a case (repaired, acquitted,
	// replaced, storm-ended), lists the transitions of the case's earlier
	// alerts: the resolution passes every route one of them passed (Route.Match).
	Ends []Transition `json:"ends,omitempty"`
}

// subjectNamespace makes alert IDs UUIDs that no other producer collides
// with; fixed forever, since receivers compare IDs across versions.
var subjectNamespace = uuid.MustParse("6f1c2a5e-8d4b-4c8e-9b0a-3e5f7d2c1a90")

// StableID derives the alert ID from what identifies the alert: the same
// host, subject and transition always give the same ID.
func StableID(host, subject string, t Transition) string {
	return uuid.NewSHA1(subjectNamespace, []byte(host+"\x00"+subject+"\x00"+string(t))).String()
}

// Subject builds the key of an alert that belongs to no case, such as
// Subject("source", "tracefs", "3") for the third blind episode of a
// source: the parts must make each occurrence distinct, since the outbox
// sends one alert per (subject, transition, notifier).
func Subject(parts ...string) string { return strings.Join(parts, ":") }

// Validate checks what every notifier relies on.
func (a Alert) Validate() error {
	var problems []string
	if a.ID == "" {
		problems = append(problems, "empty ID")
	}
	if a.Case == "" {
		problems = append(problems, "empty case")
	}
	if !a.Transition.Valid() {
		problems = append(problems, fmt.Sprintf("unknown transition %q", a.Transition))
	}
	if a.Severity.Rank() < 0 {
		problems = append(problems, fmt.Sprintf("unknown severity %q", a.Severity))
	}
	for _, t := range a.Ends {
		if !t.Valid() {
			problems = append(problems, fmt.Sprintf("unknown transition %q in ends", t))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid alert: %s", strings.Join(problems, ", "))
	}
	return nil
}

// Title is a one-line headline, the same in every integration.
func (a Alert) Title() string {
	s := fmt.Sprintf("[%s] %s %s", a.Severity, a.Host, a.Transition)
	if a.Suspect != "" {
		s += " " + a.Suspect
	}
	return s
}

// Notifier delivers one alert to one integration. retry says whether trying
// again later can help (a peer down, a timeout) as opposed to never (a
// rejected credential is retried too, since an operator may fix it; a
// malformed alert is not). Notify must return when ctx ends.
type Notifier interface {
	Notify(ctx context.Context, a Alert) (retry bool, err error)
}

// Background is implemented by notifiers with work of their own between
// alerts (Alertmanager's re-posting of open cases): whoever runs the
// dispatcher also runs these until ctx ends, reporting errors to onErr.
type Background interface {
	Run(ctx context.Context, onErr func(error))
}

// TestAlert is what `selfprotect alert test` sends: its subject is unique
// per run, so the outbox never takes it for a duplicate.
func TestAlert(host string, now time.Time) Alert {
	subject := Subject("test", now.UTC().Format(time.RFC3339Nano))
	return Alert{
		ID: StableID(host, subject, Test), Case: subject, Transition: Test, Severity: SeverityInfo,
		Summary: "test alert from 'selfprotect alert test': this notifier works", Host: host, Time: now,
	}
}

// NamedNotifier is a configured notifier with its name and route.
type NamedNotifier struct {
	Name     string
	Type     string
	Route    Route
	Notifier Notifier
	// Concurrency caps this notifier's sends in flight.
	Concurrency int
	// Timeout bounds one Notify call.
	Timeout time.Duration
}
