package store

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// Strings json.Marshal treats specially: HTML, control and quote
// characters, invalid UTF-8, the two JavaScript line separators, DEL and
// multi-byte text that passes as is.
var oddStrings = []string{
	"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\tnew\nline\rret\bback\fform",
	"\x00\x01\x1f\x7f", "bad \xff utf-8 \xc3", "line\u2028sep\u2029para", "DIMM_Ä1 → 4 kB 😀", "\xe2\x80", "trailing\\",
}

func TestJSONStringIsJSON(t *testing.T) {
	for _, s := range oddStrings {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendJSONString(nil, s)), "%q", s)
	}
}

func FuzzJSONString(f *testing.F) {
	for _, s := range oddStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Skip()
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, json.Marshal %s", s, got, want)
		}
	})
}

// journalRecord is d as encoding/json would write it into the journal:
// what appendJournal must equal.
func journalRecord(d JournalDecision) journalJSON {
	c := d.Case
	ev := make([]evidenceJSON, len(c.Evidence))
	for i, e := range c.Evidence {
		ev[i] = toEvidenceJSON(e)
	}
	also := make([]string, len(c.Also))
	for i, r := range c.Also {
		also[i] = string(r)
	}
	rec := journalJSON{Version: journalVersion, Case: journalCaseJSON{
		ID: c.ID, Opened: c.Opened.UTC().Format(time.RFC3339Nano), Rule: c.Rule, Diagnosis: string(c.Diagnosis),
		Suspect: string(c.Suspect), Also: also, FRU: c.FRU, State: string(c.State), Summary: c.Summary, Evidence: ev,
	}}
	for _, a := range d.Intents {
		rec.Intents = append(rec.Intents, journalIntentJS{Time: a.Time.UTC().Format(time.RFC3339Nano),
			Resource: string(a.Resource), Kind: a.Kind, Outcome: string(a.Outcome), Detail: a.Detail})
	}
	return rec
}

// The journal's record is written by hand (appendJournalJSON) and read by
// encoding/json: for every shape of decision — omitted fields, no
// intents, several pieces of evidence, odd strings — the hand-written
// bytes are exactly json.Marshal's.
func TestJournalEncodingIsJSON(t *testing.T) {
	at := time.Date(2026, 12, 2, 8, 0, 0, 123456789, time.FixedZone("CET", 3600))
	full := journalDecision("c1", 0x1234, at)
	full.Case.Evidence = append(full.Case.Evidence, fault.Evidence{Time: at, Source: fault.SourceEDACPoll, Count: 7, CPU: -1, Bank: -1,
		Status: 1<<63 | 1, Addr: 0xffff_ffff_ffff_f000, Summary: "x"})
	bare := journalDecision("c2", 0x5678, at)
	bare.Case.Also, bare.Case.FRU, bare.Case.Summary, bare.Case.Evidence = nil, "", "", nil
	bare.Intents[0].Detail = ""
	none := journalDecision("c3", 0x9abc, at)
	none.Intents = nil
	empty := journalDecision("c5", 0x1, at)
	empty.Intents = []fault.Action{}
	odd := journalDecision("c4", 0xdef0, at)
	odd.Case.Rule, odd.Case.FRU, odd.Case.Summary = oddStrings[3], oddStrings[6], oddStrings[7]
	odd.Case.Evidence[0].DIMM, odd.Case.Evidence[0].Summary = oddStrings[4], oddStrings[5]
	odd.Intents[0].Detail = oddStrings[8]
	for _, d := range []JournalDecision{full, bare, none, empty, odd} {
		t.Run(d.Case.ID, func(t *testing.T) {
			want, err := json.Marshal(journalRecord(d))
			require.NoError(t, err)
			got, err := appendJournal(nil, d)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
			back, err := decodeJournal(got)
			require.NoError(t, err)
			require.Equal(t, d.Case.ID, back.Case.ID)
			require.Len(t, back.Intents, len(d.Intents))
		})
	}
}
