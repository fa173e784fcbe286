package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/countonce"
	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/jsonout"
	"github.com/selfprotect/selfprotect/policy"
	"github.com/selfprotect/selfprotect/store"
)

var updateJSON = flag.Bool("update", false, "rewrite testdata/json/*.json")

// fixedStore is a store with one isolated page case (two events, an
// intent, the outcome) and one refused CPU case, at fixed times and IDs.
func fixedStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "selfprotect.db"))
	require.NoError(t, err)
	defer st.Close()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	ev := func(i int) fault.Event {
		e := fault.NewEvent(fault.SourceTraceMCE, at.Add(time.Duration(i)*time.Second))
		e.Class, e.Severity, e.Count = fault.ClassMemory, fault.SeverityCorrected, 1
		e.CPU, e.Socket, e.Bank, e.Status = 1, 0, 7, 0x9c00000000010090
		e.PhysAddr, e.AddrValid, e.AddrLSB = 0x2d94040, true, 6
		e.MC, e.DIMMLabel = 0, "DIMM_A1"
		return e
	}
	evs := []fault.Event{ev(0), ev(1)}
	require.NoError(t, st.AddEvents(evs))
	page := fault.Case{ID: "0b7c3f0e-1111-4222-8333-444455556666", Opened: at.Add(time.Second), Rule: "page",
		Diagnosis: fault.DiagSoftOfflinePage, Suspect: fault.Page(0x2d94), FRU: "DIMM_A1", State: fault.CaseOpen,
		Summary:  "2 corrected memory errors on page 0x2d94 within 24h (threshold 2): soft offline the page",
		Evidence: []fault.Evidence{fault.EvidenceOf(&evs[0]), fault.EvidenceOf(&evs[1])}}
	require.NoError(t, st.SaveIntent(page, []fault.Action{{CaseID: page.ID, Time: at.Add(time.Second),
		Resource: page.Suspect, Kind: "soft-offline", Outcome: fault.OutcomeIntended}}))
	require.NoError(t, st.AddAction(fault.Action{CaseID: page.ID, Time: at.Add(2 * time.Second), Resource: page.Suspect,
		Kind: "soft-offline", Outcome: fault.OutcomeIsolated, Attempts: 1, Detail: "page 0x2d94 soft-offlined, HWPOISON set"}))
	require.NoError(t, st.UpdateCaseState(page.ID, fault.CaseIsolated, at.Add(2*time.Second), ""))

	cpu := fault.Case{ID: "9d8e7f60-aaaa-4bbb-8ccc-ddddeeeeffff", Opened: at.Add(time.Minute), Rule: "cpu",
		Diagnosis: fault.DiagOfflineCPU, Suspect: fault.CPU(0), Also: []fault.Resource{fault.CPU(2)}, FRU: "CPU socket 0",
		State: fault.CaseOpen, Summary: "5 corrected L1 cache errors in CPU 0's own bank within 24h (threshold 5)"}
	require.NoError(t, st.SaveCase(cpu))
	require.NoError(t, st.AddAction(fault.Action{CaseID: cpu.ID, Time: at.Add(time.Minute), Resource: cpu.Suspect,
		Kind: "cpu-offline", Outcome: fault.OutcomeRefused, Violations: []string{"deny.cpus"},
		Detail: "refused: deny.cpus: CPU 0 is never offlined"}))
	require.NoError(t, st.UpdateCaseState(cpu.ID, fault.CaseFailed, at.Add(time.Minute), "refused"))
	return dir
}

// fixedStatus is a daemon's status with every list and map filled.
func fixedStatus() daemon.Status {
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	return daemon.Status{Version: "0.1.0", PID: 4242, Started: at, Armed: true, Degraded: true,
		Problems: []string{"tracefs: 3 records lost to ring-buffer overruns"}, Mode: "enforce",
		Metrics: "http://127.0.0.1:9473/metrics",
		Sources: []daemon.SourceStatus{{Name: "ebpf", State: daemon.SourceUnavailable, Detail: "no BTF"},
			{Name: "tracefs", State: daemon.SourceArmed}},
		Events:     daemon.EventCounters{Received: 9, Counted: 7, Errors: 7, Merged: 2, FirstBy: map[string]uint64{"mce_record": 7}, Stored: 9},
		CountPaths: []countonce.Path{{Class: "memory corrected", From: "mce_record", Why: "CEC is on"}},
		Kernel:     daemon.KernelStatus{CEC: "absent", SoftOffline: "enabled", EDAC: "no driver bound"},
		Budgets: daemon.BudgetStatus{CPUsPresent: 4, CPUsOnline: 3, CPUsOfflineByUs: []int{3}, PagesRetired: 1,
			PagesRetiredByUs: 1, PagesRetiredLimit: 246},
		Cases:        []daemon.CaseSummary{{ID: "0b7c3f0e", Diagnosis: "soft-offline-page", Suspect: "page:0x2d94", State: "isolated"}},
		CasesByState: map[string]int{"isolated": 1}, CasesTotal: 1,
		Actions: map[string]int{"isolated": 1},
		Alerts: []alert.NotifierStatus{{Name: "ops", Type: "webhook", Sent: 2, LastSuccess: at.Add(time.Hour)},
			{Name: "nms", Type: "snmp", Pending: 1, Failed: 3, LastError: "timeout", LastErrorAt: at.Add(time.Hour)}}}
}

// Each command's --json output from a fixed store, pinned by a golden file
// and checked against doc/json-schema.json: a renamed, missing or extra
// field, an enum printed as a number or a time not in RFC 3339 fails.
// Regenerate with: go test ./cmd/selfprotect/ -run TestJSONOutputs -update
func TestJSONOutputs(t *testing.T) {
	state := fixedStore(t)
	schema, err := os.ReadFile("../../doc/json-schema.json")
	require.NoError(t, err)
	for _, tt := range []struct {
		name, command string
		args          []string
	}{
		{"faulty", "faulty", []string{"faulty", "--all", "--json"}},
		{"faulty-active", "faulty", []string{"faulty", "--json"}},
		{"explain", "explain", []string{"explain", "0b7c3f0e-1111", "--json"}},
		{"events", "events", []string{"events", "--json"}},
		{"version", "version", []string{"version", "--json"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := runCLI(t, append(tt.args, "--state", state)...)
			require.NoError(t, err, stderr)
			require.NoError(t, jsonout.Validate(schema, tt.command, []byte(out)), out)
			requireJSONGolden(t, tt.name, out)
		})
	}
	t.Run("alert-test", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "selfprotect.yaml")
		require.NoError(t, os.WriteFile(cfg, []byte("alerts:\n  notifiers:\n"+
			"    - {name: good, type: exec, exec: {command: [/bin/true]}}\n"+
			"    - {name: bad, type: exec, exec: {command: [/bin/false]}}\n"), 0o600))
		out, _, err := runCLI(t, "alert", "test", "--config", cfg, "--json")
		require.ErrorIs(t, err, errAlertTestFailed, "one notifier failed: the exit status says so")
		require.NoError(t, jsonout.Validate(schema, "alert-test", []byte(out)), out)
		var got jsonout.AlertTest
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		require.Len(t, got.Notifiers, 2)
		require.Equal(t, []any{"good", "exec", true, ""}, []any{got.Notifiers[0].Name, got.Notifiers[0].Type, got.Notifiers[0].OK, got.Notifiers[0].Error})
		require.Equal(t, []any{"bad", false}, []any{got.Notifiers[1].Name, got.Notifiers[1].OK})
		require.NotEmpty(t, got.Notifiers[1].Error)
	})
	// check-config: a valid file (a warning, a notifier whose secret must
	// not print), a file with three problems (all listed, exit status 1),
	// a missing file and the built-in policy.
	for _, tt := range []struct {
		name, file string
		valid      bool
	}{
		{"check-config-valid", "testdata/check-config/valid.yaml", true},
		{"check-config-invalid", "testdata/check-config/invalid.yaml", false},
		{"check-config-missing", "testdata/check-config/no-such-file.yaml", false},
		{"check-config-builtin", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"check-config", "--json"}
			if tt.file != "" {
				args = append(args, tt.file)
			}
			out, stderr, err := runCLI(t, args...)
			if tt.valid {
				require.NoError(t, err, stderr)
			} else {
				require.ErrorIs(t, err, errConfigInvalid, "the exit status says the file was refused")
			}
			require.NoError(t, jsonout.Validate(schema, "check-config", []byte(out)), out)
			require.NotContains(t, out, "s3cr3t", "a secret never prints")
			var got jsonout.CheckConfig
			require.NoError(t, json.Unmarshal([]byte(out), &got))
			require.Equal(t, tt.valid, got.Valid)
			require.Equal(t, tt.valid, len(got.Errors) == 0, "errors listed exactly when invalid")
			require.Equal(t, tt.valid, got.Policy != "", "the effective policy exactly when valid")
			if tt.file == "" {
				// The built-in policy is pinned by policy's own tests.
				want, err := policy.Defaults().YAML()
				require.NoError(t, err)
				require.Equal(t, string(want), got.Policy)
				return
			}
			requireJSONGolden(t, tt.name, out)
		})
	}
	// alert config: every notifier type with every secret set (each
	// ends in -s3cr3t), and a file without notifiers.
	for _, tt := range []struct{ name, file string }{
		{"alert-config", "testdata/alert-config/all.yaml"},
		{"alert-config-none", "testdata/alert-config/none.yaml"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := runCLI(t, "alert", "config", "--config", tt.file, "--json")
			require.NoError(t, err, stderr)
			require.NoError(t, jsonout.Validate(schema, "alert-config", []byte(out)), out)
			require.NotContains(t, out, "s3cr3t", "a secret never prints")
			requireJSONGolden(t, tt.name, out)
		})
	}
	t.Run("replay", func(t *testing.T) {
		args := []string{"replay", "--trace", "../../replay/testdata/anchors.jsonl", "--compare", "builtin:anchors"}
		out, stderr, err := runCLI(t, append(args, "--json")...)
		require.NoError(t, err, stderr)
		require.NoError(t, jsonout.Validate(schema, "replay", []byte(out)), out)
		requireJSONGolden(t, "replay", out)

		// The same figures as the text report, policy by policy.
		var got jsonout.Replay
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		text, _, err := runCLI(t, args...)
		require.NoError(t, err)
		row := func(label string) []string {
			for _, l := range strings.Split(text, "\n") {
				f := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), -1)
				if f[0] == label {
					return f[1:]
				}
			}
			t.Fatalf("no row %q in the text report:\n%s", label, text)
			return nil
		}
		names, retired, ue := row("policy"), row("pages retired"), row("UE pages")
		require.Len(t, got.Policies, len(names))
		for i, p := range got.Policies {
			require.Equal(t, names[i], p.Name)
			require.Equal(t, retired[i], strconv.FormatUint(p.PagesRetired, 10), p.Name)
			require.Equal(t, ue[i], strconv.Itoa(p.UEPages), p.Name)
		}
		require.EqualValues(t, 8, got.Events)
	})
	t.Run("status", func(t *testing.T) {
		var b strings.Builder
		st := fixedStatus()
		st.Started = st.Started.In(time.FixedZone("CET", 3600)) // printed in UTC all the same
		require.NoError(t, jsonout.Write(&b, jsonout.Status(st)))
		require.NoError(t, jsonout.Validate(schema, "status", []byte(b.String())), b.String())
		requireJSONGolden(t, "status", b.String())

		// Before its sources start, a daemon has none: a list all the same.
		st.Sources = nil
		b.Reset()
		require.NoError(t, jsonout.Write(&b, jsonout.Status(st)))
		require.Contains(t, b.String(), `"sources": [],`)
		require.NoError(t, jsonout.Validate(schema, "status", []byte(b.String())))
	})
}

func requireJSONGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "json", name+".json")
	if *updateJSON {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "go test ./cmd/selfprotect/ -run TestJSONOutputs -update writes it")
	require.Equal(t, string(want), got, "%s differs", path)
}
