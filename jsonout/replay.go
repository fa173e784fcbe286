package jsonout

import (
	"time"

	"github.com/selfprotect/selfprotect/replay"
)

// Replay is `replay --json`: what each policy would have done on the
// history, the text report's figures without its rounding.
type Replay struct {
	Hosts    int            `json:"hosts"`
	Events   uint64         `json:"events" desc:"records replayed"`
	From     time.Time      `json:"from,omitzero" desc:"the first record's time; left out when there was none"`
	To       time.Time      `json:"to,omitzero" desc:"the last record's time; left out when there was none"`
	RAMBytes uint64         `json:"ram_bytes" desc:"RAM of every host in the history"`
	Policies []ReplayPolicy `json:"policies" desc:"in the order given: --policy first, then each --compare"`
}

// ReplayPolicy is one policy's outcome.
type ReplayPolicy struct {
	Name                 string         `json:"name" desc:"the policy's name, as the text report heads its column"`
	Notes                []string       `json:"notes" desc:"what the model of another tool leaves out"`
	EventsSeen           uint64         `json:"events_seen" desc:"records the modelled tool could observe"`
	Cases                map[string]int `json:"cases" desc:"cases opened, by rule"`
	PagesRetired         uint64         `json:"pages_retired" desc:"soft, row and hard offlines (not the kernel's own poisoning)"`
	RAMRetiredPercent    float64        `json:"ram_retired_percent" desc:"pages retired over the RAM of every host, percent"`
	WorstHost            string         `json:"worst_host" desc:"the host with the largest share of its RAM retired; empty when none retired"`
	WorstHostPercent     float64        `json:"worst_host_percent"`
	PagesRefused         uint64         `json:"pages_refused"`
	CPUsOffline          uint64         `json:"cpus_offline"`
	CPUsRefused          uint64         `json:"cpus_refused"`
	Refusals             map[string]int `json:"refusals" desc:"refused actions by the budget they broke (one action may break several)"`
	AlreadyIsolated      uint64         `json:"already_isolated" desc:"targets an earlier case or the kernel had already taken out"`
	Failed               uint64         `json:"failed"`
	DIMMCases            int            `json:"dimm_cases"`
	DIMMsWithUE          int            `json:"dimms_with_ue" desc:"DIMMs with an uncorrected error"`
	DIMMsFlaggedBeforeUE int            `json:"dimms_flagged_before_ue"`
	DIMMLead             Leads          `json:"dimm_lead" desc:"how long before its first uncorrected error a DIMM was flagged"`
	UEPages              int            `json:"ue_pages" desc:"pages with an uncorrected error (first per page and host)"`
	ProtectedByPage      int            `json:"protected_by_page" desc:"UE pages retired before their error"`
	ProtectedByDIMM      int            `json:"protected_by_dimm" desc:"UE pages whose DIMM was flagged before their error (and not retired)"`
	ProtectedShare       float64        `json:"protected_share" desc:"(protected_by_page + protected_by_dimm) / ue_pages, 0-1; 0 without UE pages"`
	UELead               Leads          `json:"ue_lead" desc:"how long before its uncorrected error a protected page was protected"`
}

// Leads are lead times: how many, and their percentiles (nearest rank),
// in seconds; the percentiles are 0 when there are none.
type Leads struct {
	Count      int     `json:"count"`
	P10Seconds float64 `json:"p10_seconds"`
	P50Seconds float64 `json:"p50_seconds"`
	P90Seconds float64 `json:"p90_seconds"`
}

// NewReplay converts a replay's report.
func NewReplay(r *replay.Report) Replay {
	out := Replay{Hosts: r.Hosts, Events: r.Events, RAMBytes: r.TotalPages * 4096, Policies: make([]ReplayPolicy, 0, len(r.Policies))}
	if r.Events > 0 {
		out.From, out.To = utc(r.From), utc(r.To)
	}
	for i := range r.Policies {
		p := &r.Policies[i]
		out.Policies = append(out.Policies, ReplayPolicy{
			Name: p.Name, Notes: nonNil(p.Notes), EventsSeen: p.EventsSeen, Cases: counts(p.Cases),
			PagesRetired: p.PagesRetired, RAMRetiredPercent: p.RetiredPercent,
			WorstHost: p.MaxHost, WorstHostPercent: p.MaxHostRetiredPercent,
			PagesRefused: p.PagesRefused, CPUsOffline: p.CPUsOffline, CPUsRefused: p.CPUsRefused,
			Refusals: counts(p.Refusals), AlreadyIsolated: p.AlreadyIsolated, Failed: p.Failed,
			DIMMCases: p.DIMMCases, DIMMsWithUE: p.DIMMsWithUE, DIMMsFlaggedBeforeUE: p.DIMMsFlaggedBeforeUE,
			DIMMLead: leads(p.DIMMLead), UEPages: p.UEPages, ProtectedByPage: p.ProtectedByPage,
			ProtectedByDIMM: p.ProtectedByDIMM, ProtectedShare: p.ProtectedShare(), UELead: leads(p.UELead),
		})
	}
	return out
}

func leads(sorted []time.Duration) Leads {
	l := Leads{Count: len(sorted)}
	if len(sorted) > 0 {
		l.P10Seconds = replay.Percentile(sorted, 10).Seconds()
		l.P50Seconds = replay.Percentile(sorted, 50).Seconds()
		l.P90Seconds = replay.Percentile(sorted, 90).Seconds()
	}
	return l
}

func counts(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
