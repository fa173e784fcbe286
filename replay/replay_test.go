package replay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/policy"
)

var defaultHost = HostSpec{RAMMiB: 256 << 10, CPUs: 64, ThreadsPerCore: 2}

func replayFile(t *testing.T, path string, policies ...Policy) *Report {
	t.Helper()
	r, err := New(defaultHost, policies...)
	require.NoError(t, err)
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, r.ReadTrace(path, f))
	return r.Report()
}

func builtin(t *testing.T, names ...string) []Policy {
	t.Helper()
	var out []Policy
	for _, n := range names {
		p, err := LoadPolicy(BuiltinPrefix + n)
		require.NoError(t, err)
		out = append(out, p...)
	}
	return out
}

// expect is the part of a PolicyReport the golden tests pin down.
type expect struct {
	seen                             uint64
	cases                            map[string]int
	retired, refused, already        uint64
	cpusOff, cpusRefused             uint64
	refusals                         map[string]int
	dimmCases, dimmsUE, dimmsFlagged int
	uePages, byPage, byDIMM          int
	ueLead, dimmLead                 []time.Duration
}

func check(t *testing.T, got PolicyReport, want expect) {
	t.Helper()
	if want.cases == nil {
		want.cases = map[string]int{}
	}
	if want.refusals == nil {
		want.refusals = map[string]int{}
	}
	require.Equal(t, want.seen, got.EventsSeen, "events seen")
	require.Equal(t, want.cases, got.Cases, "cases by rule")
	require.Equal(t, want.retired, got.PagesRetired, "pages retired")
	require.Equal(t, want.refused, got.PagesRefused, "pages refused")
	require.Equal(t, want.already, got.AlreadyIsolated, "already isolated")
	require.Equal(t, want.cpusOff, got.CPUsOffline, "CPUs offlined")
	require.Equal(t, want.cpusRefused, got.CPUsRefused, "CPUs refused")
	require.Equal(t, want.refusals, got.Refusals, "refusals by budget")
	require.Equal(t, want.dimmCases, got.DIMMCases, "DIMM cases")
	require.Equal(t, want.dimmsUE, got.DIMMsWithUE, "DIMMs with a UE")
	require.Equal(t, want.dimmsFlagged, got.DIMMsFlaggedBeforeUE, "DIMMs flagged before their UE")
	require.Equal(t, want.uePages, got.UEPages, "UE pages")
	require.Equal(t, want.byPage, got.ProtectedByPage, "UE pages retired before the UE")
	require.Equal(t, want.byDIMM, got.ProtectedByDIMM, "UE pages whose DIMM was flagged first")
	require.Equal(t, want.ueLead, nilIfEmpty(got.UELead), "UE lead times")
	require.Equal(t, want.dimmLead, nilIfEmpty(got.DIMMLead), "DIMM lead times")
}

func nilIfEmpty(d []time.Duration) []time.Duration {
	if len(d) == 0 {
		return nil
	}
	return d
}

const h = time.Hour

// TestGoldenAnchors replays testdata/anchors.jsonl through our default
// policy and every anchor. The trace, times in hours from 01-01 00:00:
//
//	t0   CE 0x1000 D1      t1  CE 0x1000 D1    t2 CE 0x2000 D1
//	t32  CE 0x2000 D1 (30 h after the first: outside 24 h, inside 72 h)
//	t48  UE 0x2000 D1      t49 UE 0x1000 D1
//	t72  CE 0x3000 D2 count 60                 t96 UE 0x4000 D2
//
// Every UE page is scored before the kernel poisons it; each policy's
// uncorrected rule then finds the page already poisoned.
func TestGoldenAnchors(t *testing.T) {
	rep := replayFile(t, "testdata/anchors.jsonl", builtin(t, "selfprotect", "rasdaemon", "mcelog", "cec", "cec-2", "fma")...)
	require.Equal(t, 1, rep.Hosts)
	require.EqualValues(t, 8, rep.Events)
	require.EqualValues(t, 16<<30/4096, rep.TotalPages)
	// Errors over time, policy-independent: D2's 60 and D1's 4 corrected
	// errors, all in the Unix week starting Thursday 2026-01-01.
	week0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	require.Equal(t, []DIMMSeries{
		{Host: "a", Label: "D2", MC: 0, Total: 60, Start: week0, Weekly: []uint32{60}, FirstUE: week0.Add(96 * h)},
		{Host: "a", Label: "D1", MC: 0, Total: 4, Start: week0, Weekly: []uint32{4}, FirstUE: week0.Add(48 * h)},
	}, rep.TopDIMMs)
	byName := map[string]PolicyReport{}
	for _, p := range rep.Policies {
		byName[p.Name] = p
	}

	// selfprotect, page 2/24h: 0x1000 trips at t1, 0x3000 at t72 (one
	// record of 60); 0x2000's two errors are 30 h apart. Its three
	// uncorrected cases find pages the kernel already poisoned. Only
	// 0x1000 was out before its UE: lead t49-t1 = 48 h. DIMM rule (1000
	// errors or 5 pages within 3 days) never trips.
	check(t, byName["selfprotect"], expect{seen: 8, cases: map[string]int{"page": 2, "uncorrected": 3},
		retired: 2, already: 3, dimmsUE: 2, uePages: 3, byPage: 1, ueLead: []time.Duration{48 * h}})

	// rasdaemon, 50/24h on mc_event records (every record has a DIMM, so
	// all are mc_event): only the 60-error record trips. 0x3000 never has
	// a UE, so nothing is protected.
	check(t, byName["rasdaemon"], expect{seen: 8, cases: map[string]int{"page": 1},
		retired: 1, dimmsUE: 2, uePages: 3})

	// mcelog, 2/24h: the same two pages as ours, no uncorrected rule.
	check(t, byName["mcelog"], expect{seen: 8, cases: map[string]int{"page": 2},
		retired: 2, dimmsUE: 2, uePages: 3, byPage: 1, ueLead: []time.Duration{48 * h}})

	// CEC at 1023: 60 is far from it; nothing happens.
	check(t, byName["cec"], expect{seen: 8, dimmsUE: 2, uePages: 3})

	// CEC at 2: counts never decay, so 0x2000's errors 30 h apart still
	// trip (t32); 0x1000 at t1; the count-60 record at its second entry.
	// Leads: 0x2000 t48-t32 = 16 h, 0x1000 48 h.
	check(t, byName["cec-2"], expect{seen: 8, cases: map[string]int{"cec": 3},
		retired: 3, dimmsUE: 2, uePages: 3, byPage: 2, ueLead: []time.Duration{16 * h, 48 * h}})

	// FMA, page 2/72h: 0x1000 (t1), 0x2000 (t32, 30 h apart) and 0x3000
	// (t72). DIMM 10/week: D1 sees 6 errors (4 CEs, 2 UEs), D2 trips on
	// the 60-error record at t72, so 0x4000's UE at t96 is protected by
	// the DIMM flag (24 h) and D2 is flagged 24 h before its first UE.
	check(t, byName["fma"], expect{seen: 8, cases: map[string]int{"page": 3, "dimm": 1, "uncorrected": 3},
		retired: 3, already: 3, dimmCases: 1, dimmsUE: 2, dimmsFlagged: 1, uePages: 3, byPage: 2, byDIMM: 1,
		ueLead: []time.Duration{16 * h, 24 * h, 48 * h}, dimmLead: []time.Duration{24 * h}})
}

// TestGoldenBudgets replays testdata/budgets.jsonl with the default policy.
//
//	pages: 1024 on the host, limit uint64(1024 × 0.1%) = 1 page. 0x10
//	  trips and is retired; 0x20 trips and is refused; 0x30 (count 5)
//	  trips and is refused: 2 refusals of max_ram_retired_percent.
//	CPUs: 5 L1 errors on CPU 1 offline 1 and its sibling 5 (6 stay, need
//	  ceil(0.75 × 8) = 6). CPU 2's five errors 10 min later would leave 4:
//	  refused for min_online_cpu_fraction and cpu_offline_interval (1 h),
//	  both CPUs 2 and 6 counted. CPU 5's case finds 1 and 5 offline
//	  already: 2 already-isolated, no action.
func TestGoldenBudgets(t *testing.T) {
	rep := replayFile(t, "testdata/budgets.jsonl", builtin(t, "selfprotect")...)
	check(t, rep.Policies[0], expect{seen: 12, cases: map[string]int{"page": 3, "cpu": 3},
		retired: 1, refused: 2, already: 2, cpusOff: 2, cpusRefused: 2,
		refusals: map[string]int{"max_ram_retired_percent": 2, "min_online_cpu_fraction": 1, "cpu_offline_interval": 1}})
	require.InDelta(t, 100.0/1024, rep.Policies[0].RetiredPercent, 1e-12)
	// Isolated names them: CPUs 1 and 5, page 0x10.
	r, err := New(defaultHost, builtin(t, "selfprotect")...)
	require.NoError(t, err)
	f, err := os.Open("testdata/budgets.jsonl")
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, r.ReadTrace("budgets", f))
	require.Equal(t, []fault.Resource{"cpu:1", "cpu:5", "page:0x10"}, r.Isolated(0, "small"))
	require.Nil(t, r.Isolated(0, "nope"))
	require.Equal(t, "small", rep.Policies[0].MaxHost)
}

// TestPolicyChangesReport: the same trace under a stricter page threshold
// must retire fewer pages and protect fewer UE pages, so a report that
// ignored the policy would fail here.
func TestPolicyChangesReport(t *testing.T) {
	def := builtin(t, "selfprotect")[0]
	cfg := policy.Defaults()
	cfg.Rules.Page.Threshold = 3
	strict := Policy{Name: "page-3", Config: cfg}
	rep := replayFile(t, "testdata/anchors.jsonl", def, strict)
	require.EqualValues(t, 2, rep.Policies[0].PagesRetired)
	require.Equal(t, 1, rep.Policies[0].ProtectedByPage)
	// With 3 errors needed only the 60-error record trips.
	require.EqualValues(t, 1, rep.Policies[1].PagesRetired)
	require.Equal(t, 0, rep.Policies[1].ProtectedByPage)

	var a, b strings.Builder
	require.NoError(t, (&Report{Policies: rep.Policies[:1]}).WriteText(&a))
	require.NoError(t, (&Report{Policies: rep.Policies[1:]}).WriteText(&b))
	require.NotEqual(t, strings.ReplaceAll(a.String(), "selfprotect", "page-3"), b.String())
}

func TestBadTraces(t *testing.T) {
	tests := []struct{ file, want string }{
		{"unknown-field.jsonl", `unknown-field.jsonl:1: field "adr": unknown field`},
		{"addr-not-hex.jsonl", `addr-not-hex.jsonl:2: field "addr": want a hex string like "0x2d94040", got "4096"`},
		{"bad-time.jsonl", `bad-time.jsonl:3: field "time": want RFC 3339`},
		{"zero-count.jsonl", `zero-count.jsonl:1: field "count": must be between 1 and 4294967295, got 0`},
		{"cpu-string.jsonl", `cpu-string.jsonl:1: field "cpu": want a int, got JSON string`},
		{"bad-severity.jsonl", `bad-severity.jsonl:1: field "severity": unknown severity "bad"`},
		{"backwards.jsonl", `backwards.jsonl:2: field "time": 2026-01-01T00:00:00Z is before host "a"'s previous record`},
		{"two-objects.jsonl", `two-objects.jsonl:1: more than one JSON value on the line`},
		{"truncated.jsonl", `truncated.jsonl:1: truncated JSON object`},
		{"host-smt.jsonl", `host-smt.jsonl:1: cpus (3) must be a multiple of threads_per_core (2)`},
		{"host-late.jsonl", `host-late.jsonl:2: field "host": host "a" described twice or after its first error`},
		{"empty-host.jsonl", `empty-host.jsonl:1: field "host": missing or empty`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tt.file)
			r, err := New(defaultHost, builtin(t, "selfprotect")...)
			require.NoError(t, err)
			f, err := os.Open(path)
			require.NoError(t, err)
			defer f.Close()
			err = r.ReadTrace(path, f)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestLoadPolicy(t *testing.T) {
	ps, err := LoadPolicy("builtin:anchors")
	require.NoError(t, err)
	require.Len(t, ps, len(Anchors))
	for _, p := range ps {
		require.NoError(t, p.Config.Validate(), p.Name)
		require.NotEmpty(t, p.Notes, p.Name)
	}
	_, err = LoadPolicy("builtin:nope")
	require.ErrorContains(t, err, `unknown built-in policy "builtin:nope"`)
	_, err = LoadPolicy("testdata/missing.yaml")
	require.ErrorContains(t, err, "testdata/missing.yaml")
}

// TestGrouped: a grouped replay gives the same report as an ungrouped one
// and refuses a host that comes back.
func TestGrouped(t *testing.T) {
	trace := `{"time":"2026-01-01T00:00:00Z","host":"a","class":"memory","severity":"corrected","addr":"0x1000"}
{"time":"2026-01-01T00:00:01Z","host":"a","class":"memory","severity":"corrected","addr":"0x1000"}
{"time":"2026-01-01T00:00:00Z","host":"b","class":"memory","severity":"corrected","addr":"0x1000"}
`
	run := func(grouped bool, text string) (*Report, error) {
		r, err := New(defaultHost, builtin(t, "selfprotect")...)
		require.NoError(t, err)
		if grouped {
			r.Grouped()
		}
		err = r.ReadTrace("g", strings.NewReader(text))
		return r.Report(), err
	}
	a, err := run(false, trace)
	require.NoError(t, err)
	b, err := run(true, trace)
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.EqualValues(t, 1, b.Policies[0].PagesRetired)

	_, err = run(true, trace+`{"time":"2026-01-01T00:00:02Z","host":"a","class":"memory","severity":"corrected","addr":"0x2000"}`+"\n")
	require.ErrorContains(t, err, `g:4: field "host": host "a" appears again after other hosts`)
	_, err = run(false, trace+`{"time":"2026-01-01T00:00:02Z","host":"a","class":"memory","severity":"corrected","addr":"0x2000"}`+"\n")
	require.NoError(t, err)
}

func TestRawHostCannotMixWithTrace(t *testing.T) {
	r, err := New(defaultHost, builtin(t, "selfprotect")...)
	require.NoError(t, err)
	require.NoError(t, r.ReadTrace("t", strings.NewReader(`{"time":"2026-01-01T00:00:00Z","host":"a","class":"memory","severity":"corrected","addr":"0x1000"}`+"\n")))
	recs, err := ReadMcelog("m.log", strings.NewReader("Hardware event. This is not a software error.\nCPU 1 BANK 7\nTIME 1795607192\nSTATUS 9c00000000000090\n"), "a")
	require.NoError(t, err)
	require.ErrorContains(t, r.AddRaw("m.log", recs), `m.log:1: field "host": host "a" already has records from a trace`)
}

// TestEarlyErrorInALongTrace: a bad record near the start of a trace much
// longer than the parsing pipeline holds stops the replay with its line,
// without waiting for (or deadlocking on) the rest.
func TestEarlyErrorInALongTrace(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 20*batchLines; i++ {
		if i == 10 {
			b.WriteString(`{"time":"2026-01-01T00:00:00Z","host":"a","class":"memory","severity":"bogus"}` + "\n")
			continue
		}
		b.WriteString(`{"time":"2026-01-01T00:00:00Z","host":"a","class":"memory","severity":"corrected","addr":"0x1000"}` + "\n")
	}
	r, err := New(defaultHost, builtin(t, "selfprotect")...)
	require.NoError(t, err)
	err = r.ReadTrace("long", strings.NewReader(b.String()))
	require.ErrorContains(t, err, `long:11: field "severity"`)
	require.EqualValues(t, 10, r.Report().Events, "the lines before it were replayed, none after")
}
