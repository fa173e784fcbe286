package daemon

import (
	"time"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/countonce"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

// Status is what `selfprotect status` prints. It is also the JSON the control
// socket returns, so tests and monitoring read the same thing humans do.
type Status struct {
	Version string    `json:"version"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Armed is true once every chosen source reads events: the moment the
	// daemon tells systemd READY=1.
	Armed    bool        `json:"armed"`
	Degraded bool        `json:"degraded"`
	Problems []string    `json:"problems,omitempty"`
	Mode     policy.Mode `json:"mode"`
	Paused   bool        `json:"paused"`
	// Metrics is the Prometheus endpoint's URL, or why there is none.
	Metrics  string `json:"metrics,omitempty"`
	Storming bool   `json:"storming"`

	Sources []SourceStatus `json:"sources"`
	Events  EventCounters  `json:"events"`
	// CountPaths say which path each class of error is counted from on
	// this machine, and why (design.md §2, each error counted once).
	CountPaths []countonce.Path `json:"count_paths,omitempty"`

	Kernel  KernelStatus `json:"kernel"`
	Budgets BudgetStatus `json:"budgets"`
	// Cases lists unresolved cases (at most 200); CasesByState and
	// CasesTotal count every case in the store.
	Cases        []CaseSummary  `json:"cases,omitempty"`
	CasesByState map[string]int `json:"cases_by_state,omitempty"`
	CasesTotal   int            `json:"cases_total"`
	// StoreFailures counts failed store writes since start; HeldWrites
	// are records kept in memory until the store takes them.
	StoreFailures uint64 `json:"store_failures"`
	HeldWrites    int    `json:"held_writes"`
	// Actions counts actions by outcome since start.
	Actions map[string]int `json:"actions,omitempty"`
	// Pending counts cases queued for the action worker; Held counts cases
	// diagnosed while paused, acted on at resume.
	Pending int `json:"pending_actions"`
	Held    int `json:"held_actions"`
	// Alerts is each notifier's queue and last outcome.
	Alerts []alert.NotifierStatus `json:"alerts,omitempty"`
}

// SourceStatus describes one event source.
type SourceStatus struct {
	Name   string      `json:"name"`
	State  SourceState `json:"state"` // armed, standby, unavailable, broken
	Detail string      `json:"detail,omitempty"`
}

// EventCounters are cumulative since start.
type EventCounters struct {
	Received uint64 `json:"received"` // events from all sources
	// Queued are events the sources delivered that the main loop has not
	// taken yet: with trace_pages, how a test knows nothing is in flight.
	Queued  int    `json:"queued"`
	Counted uint64 `json:"counted"` // fed to the policy engine
	// Merged are memory errors a second path reported again (mc_event
	// after mce_record, ...): counted once, their DIMM label or page added.
	Merged uint64 `json:"merged"`
	// FirstBy counts memory errors by the path that reported them first.
	FirstBy      map[string]uint64 `json:"first_by,omitempty"`
	Errors       uint64            `json:"errors"` // sum of Count over counted events
	Stored       uint64            `json:"stored"`
	NotStored    uint64            `json:"not_stored"` // dropped from the history under a storm
	Undecodable  uint64            `json:"undecodable"`
	CorruptPages uint64            `json:"corrupt_pages"` // ring-buffer pages that did not parse
	TracePages   uint64            `json:"trace_pages"`
	TraceMissed  uint64            `json:"trace_missed"`
	// The eBPF probes' records: sent one by one, counted in the kernel
	// (a storm past the per-key rate, or a full ring buffer, of which
	// RingbufFull), or lost (ring buffer and aggregation map both full).
	EBPFSent        uint64 `json:"ebpf_sent"`
	EBPFAggregated  uint64 `json:"ebpf_aggregated"`
	EBPFRingbufFull uint64 `json:"ebpf_ringbuf_full"`
	EBPFLost        uint64 `json:"ebpf_lost"`
	// EDACCredited are errors in EDAC counter deltas not counted because
	// an mc_event had delivered them.
	EDACCredited uint64 `json:"edac_credited"`
	// HeldDeltas are EDAC counter deltas waiting (a few seconds) for the
	// mc_events that may already have reported their errors.
	HeldDeltas int `json:"held_deltas"`
}

// KernelStatus reports what the kernel itself does about errors.
type KernelStatus struct {
	CEC         string `json:"cec"`          // "absent", "enabled (action_threshold 2)", ...
	SoftOffline string `json:"soft_offline"` // "enabled", "disabled by vm.enable_soft_offline=0", "unknown"
	EDAC        string `json:"edac"`         // "bound (2 controllers)", "no driver bound"
}

// BudgetStatus shows how much of each budget is used.
type BudgetStatus struct {
	CPUsPresent        int    `json:"cpus_present"`
	CPUsOnline         int    `json:"cpus_online"`
	CPUsOfflineByUs    []int  `json:"cpus_offline_by_us,omitempty"`
	CPUsOfflineByOther []int  `json:"cpus_offline_by_others,omitempty"`
	PagesRetired       uint64 `json:"pages_retired"`
	PagesRetiredByUs   int    `json:"pages_retired_by_us"`
	PagesRetiredLimit  uint64 `json:"pages_retired_limit"`
}

// CaseSummary is one line of the case list.
type CaseSummary struct {
	ID        string          `json:"id"`
	Diagnosis fault.Diagnosis `json:"diagnosis"`
	Suspect   string          `json:"suspect"`
	FRU       string          `json:"fru,omitempty"`
	State     fault.CaseState `json:"state"`
	Summary   string          `json:"summary,omitempty"`
}
