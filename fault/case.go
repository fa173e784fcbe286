package fault

import (
	"context"
	"errors"
	"time"
)

// Diagnosis says what a case concluded and so which actuator, if any, acts.
type Diagnosis string

const (
	// DiagSoftOfflinePage: a page keeps producing corrected errors.
	DiagSoftOfflinePage Diagnosis = "soft-offline-page"
	// DiagHardOfflinePage: an uncorrected error with a usable address.
	DiagHardOfflinePage Diagnosis = "hard-offline-page"
	// DiagOfflineCPU: a core-private cache keeps producing corrected errors.
	DiagOfflineCPU Diagnosis = "offline-cpu"
	// DiagOfflineRow: several pages of one DRAM row failed; retire the row.
	DiagOfflineRow Diagnosis = "offline-row"
	// DiagReplaceDIMM: a DIMM is failing as a whole; a human must replace it.
	DiagReplaceDIMM Diagnosis = "replace-dimm"
	// DiagAlertOnly: errors worth a human's attention, nothing to isolate.
	DiagAlertOnly Diagnosis = "alert-only"
	// DiagStorm: the machine-wide corrected error rate is a storm.
	DiagStorm Diagnosis = "storm"
)

// CaseState follows FMA's lifecycle.
type CaseState string

const (
	CaseOpen     CaseState = "open"     // diagnosed, action pending or not needed
	CaseIsolated CaseState = "isolated" // the suspect is out of service
	CaseFailed   CaseState = "failed"   // isolation was tried and failed or refused
	CaseRepaired CaseState = "repaired" // an operator said the part was fixed
	CaseAcquit   CaseState = "acquitted"
	CaseClosed   CaseState = "closed"
)

// Case is one diagnosis: FMA's fault with its suspect (what to disable), FRU
// (what a technician replaces) and the evidence that convinced the engine.
type Case struct {
	ID        string // UUID
	Opened    time.Time
	Rule      string
	Diagnosis Diagnosis
	Suspect   Resource
	// Also lists further resources the action covers (SMT siblings, the
	// other pages of a row).
	Also     []Resource
	FRU      string
	State    CaseState
	Summary  string
	Evidence []Evidence
}

// Evidence is one event that fed the engine, kept small enough to store.
type Evidence struct {
	Time     time.Time
	Source   Source
	Severity Severity
	Class    Class
	Count    uint32
	CPU      int
	Bank     int
	Status   uint64
	Addr     uint64
	DIMM     string
	Summary  string
}

// EvidenceOf condenses an event for a case.
func EvidenceOf(e *Event) Evidence {
	addr := uint64(0)
	if e.AddrValid {
		addr = e.PhysAddr
	}
	return Evidence{
		Time: e.Received, Source: e.Source, Severity: e.Severity, Class: e.Class,
		Count: e.Count, CPU: e.CPU, Bank: e.Bank, Status: e.Status, Addr: addr,
		DIMM: e.DIMMLabel, Summary: e.String(),
	}
}

// Outcome of one attempt to isolate one resource.
type Outcome string

const (
	OutcomeIsolated Outcome = "isolated"
	// OutcomeAlreadyIsolated: we find it isolated and our store says we did it.
	OutcomeAlreadyIsolated Outcome = "already-isolated"
	// OutcomeIsolatedByOther: someone else (kernel CEC, memory-failure
	// handler, rasdaemon, an admin) isolated it before we wrote anything.
	OutcomeIsolatedByOther Outcome = "isolated-by-other"
	OutcomeDryRun          Outcome = "dry-run"
	OutcomeRefused         Outcome = "refused" // budget, deny-list, safety rule
	OutcomePaused          Outcome = "paused"
	OutcomeFailed          Outcome = "failed"
	OutcomeNotPresent      Outcome = "not-present"
	// OutcomeIntended is the write-ahead record of a decision: stored
	// before the kernel write, followed by the outcome after it. One left
	// last after a crash is settled at start against the kernel.
	OutcomeIntended Outcome = "intended"
)

// Action records what was done (or not) about a case's resource, with enough
// detail to explain it and to undo it.
type Action struct {
	CaseID   string
	Time     time.Time
	Resource Resource
	Kind     string // "soft-offline", "hard-offline", "cpu-offline", "none"
	Outcome  Outcome
	// Violations names every budget or rule a refusal broke.
	Violations []string
	Attempts   int
	Detail     string
	// Undo is the shell command that reverses the action, "" if none.
	Undo string
}

// Source produces events until ctx ends. Run returns when the source stops;
// a nil error after ctx is cancelled, an error when it died.
type EventSource interface {
	Name() string
	Run(ctx context.Context, out chan<- Event) error
}

// Actuator isolates one kind of resource. Isolate checks, acts and verifies;
// it never decides budgets (the caller did) and never closes a case.
type Actuator interface {
	Isolate(ctx context.Context, r Resource, dryRun bool) Action
}

// ErrUnavailable is what an event source's opener returns (wrapped) when
// the source cannot run on this machine now (no BPF, tracefs not mounted,
// no EDAC driver): the caller falls back to the next source and tries
// again later. Any other error means the source is broken.
var ErrUnavailable = errors.New("source unavailable")
