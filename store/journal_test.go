package store

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/fault"
)

func journalDecision(id string, pfn uint64, at time.Time) JournalDecision {
	c := fault.Case{
		ID: id, Opened: at, Rule: "page", Diagnosis: fault.DiagSoftOfflinePage, Suspect: fault.Page(pfn),
		Also: []fault.Resource{fault.Page(pfn + 1)}, FRU: "DIMM_A1", State: fault.CaseOpen, Summary: "2 CEs on one page",
		Evidence: []fault.Evidence{{Time: at.Add(-time.Second), Source: fault.SourceTraceMCE, Severity: fault.SeverityCorrected,
			Class: fault.ClassMemory, Count: 1, CPU: 3, Bank: 7, Status: 0x9c00_0000_0001_009f, Addr: pfn << 12, DIMM: "DIMM_A1"}},
	}
	return JournalDecision{Case: c, Intents: []fault.Action{{CaseID: id, Time: at, Resource: fault.Page(pfn),
		Kind: "soft-offline", Outcome: fault.OutcomeIntended, Detail: "decided; the kernel write follows"}}}
}

func TestJournalRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), JournalFile)
	at := time.Date(2026, 12, 2, 8, 0, 0, 123456789, time.UTC)
	j, read, err := OpenJournal(path, at)
	require.NoError(t, err)
	require.Empty(t, read.Decisions)
	want := []JournalDecision{journalDecision("c1", 0x1234, at), journalDecision("c2", 0x5678, at.Add(time.Minute))}
	for _, d := range want {
		require.NoError(t, j.Append(d))
	}
	require.NoError(t, j.Close())

	j, read, err = OpenJournal(path, at)
	require.NoError(t, err)
	require.Equal(t, want, read.Decisions)
	require.Zero(t, read.Discarded)
	require.NoError(t, j.Reset())
	require.NoError(t, j.Append(want[1]))
	require.NoError(t, j.Close())

	_, read, err = OpenJournal(path, at)
	require.NoError(t, err)
	require.Equal(t, want[1:], read.Decisions, "a reset journal holds only what came after it")
}

// Every append is durable when it returns: the journal is opened O_DSYNC
// (there is no fdatasync after the write any more).
func TestJournalIsSynchronous(t *testing.T) {
	j, _, err := OpenJournal(filepath.Join(t.TempDir(), JournalFile), time.Now())
	require.NoError(t, err)
	defer j.Close()
	flags, err := unix.FcntlInt(j.f.Fd(), unix.F_GETFL, 0)
	require.NoError(t, err)
	require.NotZero(t, flags&unix.O_DSYNC, "flags %#o", flags)
	require.NotZero(t, flags&unix.O_APPEND, "flags %#o", flags)
}

// A crash can cut an append anywhere, and a disk can damage a record: the
// whole records before the damage are read, the rest is kept beside the
// journal and cut from it, and appends go on after the last whole record.
func TestJournalDamage(t *testing.T) {
	at := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		damage  func(t *testing.T, data []byte, second int) []byte
		whole   int
		problem string
	}{
		{"torn header", func(t *testing.T, data []byte, second int) []byte { return data[:second+5] }, 1, "shorter than a record header"},
		{"torn payload", func(t *testing.T, data []byte, second int) []byte { return data[:len(data)-3] }, 1, "torn append"},
		{"checksum", func(t *testing.T, data []byte, second int) []byte {
			data[len(data)-2] ^= 0x20
			return data
		}, 1, "checksum mismatch"},
		{"length out of range", func(t *testing.T, data []byte, second int) []byte {
			binary.LittleEndian.PutUint32(data[second:], maxRecord+1)
			return data
		}, 1, "out of range"},
		{"garbage appended", func(t *testing.T, data []byte, second int) []byte {
			return append(data, []byte("\x00\x00\x00\x00garbage")...)
		}, 2, "out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), JournalFile)
			j, _, err := OpenJournal(path, at)
			require.NoError(t, err)
			d1, d2 := journalDecision("c1", 0x10, at), journalDecision("c2", 0x20, at)
			require.NoError(t, j.Append(d1))
			second := int(j.Size())
			require.NoError(t, j.Append(d2))
			require.NoError(t, j.Close())
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			damaged := tc.damage(t, data, second)
			require.NoError(t, os.WriteFile(path, damaged, 0o600))

			j, read, err := OpenJournal(path, at)
			require.NoError(t, err)
			require.Equal(t, []JournalDecision{d1, d2}[:tc.whole], read.Decisions)
			require.Contains(t, read.Problem, tc.problem)
			good := second
			if tc.whole == 2 {
				good = len(data)
				if len(damaged) < good {
					good = len(damaged)
				}
			}
			require.Equal(t, int64(len(damaged)-good), read.Discarded)
			kept, err := os.ReadFile(read.KeptAt)
			require.NoError(t, err, "the discarded bytes are kept")
			require.Equal(t, damaged[good:], kept)

			d3 := journalDecision("c3", 0x30, at)
			require.NoError(t, j.Append(d3))
			require.NoError(t, j.Close())
			_, read, err = OpenJournal(path, at)
			require.NoError(t, err)
			require.Zero(t, read.Discarded, "the damage was cut: the next append follows the last whole record")
			require.Equal(t, append([]JournalDecision{d1, d2}[:tc.whole:tc.whole], d3), read.Decisions)
		})
	}
}

func TestJournalRefusesAnIntentOfAnotherCase(t *testing.T) {
	path := filepath.Join(t.TempDir(), JournalFile)
	at := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	j, _, err := OpenJournal(path, at)
	require.NoError(t, err)
	d := journalDecision("c1", 0x10, at)
	d.Intents[0].CaseID = "c2"
	require.ErrorContains(t, j.Append(d), `names case "c2"`)
	require.Zero(t, j.Size())
	require.NoError(t, j.Close())
}
