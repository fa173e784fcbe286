package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/fault"
)

// JournalFile is the decision journal's name in the state directory.
const JournalFile = "decisions.journal"

// Journal is the decisions' write-ahead record: one fdatasync'd append per
// decision before its kernel write, so the SQLite transaction that records
// the same decision can follow the write instead of preceding it. Under
// emulation that transaction's CPU was most of the time from an error to
// its isolation; the append is one write(2) and one fdatasync(2).
//
// Every record is also stored in SQLite once the write is done; the
// journal only matters when the daemon stops in between. At start the
// daemon imports the records whose case the store lacks, which then read as
// decisions whose outcome the last run did not record, and resets the
// journal. A Journal has one owner (the action worker); it is not safe for
// concurrent use.
type Journal struct {
	path string
	f    *os.File
	// size is the end of the last whole record: an append that fails
	// half-way is cut back to it, so the file stays a list of records.
	size int64
	// broken is set when a failed append could not be cut back: later
	// appends would follow a torn record, so they are refused.
	broken error
}

// JournalDecision is one journal record: a case and the actions intended
// on it, as they would go into the store.
type JournalDecision struct {
	Case    fault.Case
	Intents []fault.Action
}

// JournalRead is what OpenJournal found in an existing journal.
type JournalRead struct {
	Decisions []JournalDecision
	// Discarded counts the bytes after the last whole record: a record
	// torn by a crash during its append (its decision never reached the
	// kernel) or a damaged file. They are kept in KeptAt when not zero.
	Discarded int64
	KeptAt    string
	// Problem says why the bytes were discarded.
	Problem string
}

// Frame: payload length and CRC-32C of the payload, both little-endian
// uint32, then the payload (JSON, journalJSON).
const frameHeader = 8

// maxRecord bounds one payload: a length beyond it is damage, not a case
// (a case's evidence is a handful of events).
const maxRecord = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalJSON fixes the journal's form independently of the Go structs, as
// evidenceJSON does for the store's rows.
type journalJSON struct {
	Version int               `json:"v"`
	Case    journalCaseJSON   `json:"case"`
	Intents []journalIntentJS `json:"intents"`
}

type journalCaseJSON struct {
	ID        string         `json:"id"`
	Opened    string         `json:"opened"`
	Rule      string         `json:"rule"`
	Diagnosis string         `json:"diagnosis"`
	Suspect   string         `json:"suspect"`
	Also      []string       `json:"also,omitempty"`
	FRU       string         `json:"fru,omitempty"`
	State     string         `json:"state"`
	Summary   string         `json:"summary,omitempty"`
	Evidence  []evidenceJSON `json:"evidence,omitempty"`
}

type journalIntentJS struct {
	Time     string `json:"time"`
	Resource string `json:"resource"`
	Kind     string `json:"kind"`
	Outcome  string `json:"outcome"`
	Detail   string `json:"detail,omitempty"`
}

const journalVersion = 1

// OpenJournal opens (creating) the journal at path and returns what it
// holds. Bytes after the last whole record are copied to a file beside it
// (path.damaged-UNIXTIME) before anything can overwrite them, so a damaged
// journal loses nothing an operator could still read.
func OpenJournal(path string, now time.Time) (*Journal, JournalRead, error) {
	var read JournalRead
	// O_DSYNC: an append is on disk when its write returns, in one system
	// call where a write and an fdatasync took two (each a few tens of µs
	// under emulation, on the way from an error to its isolation).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND|unix.O_DSYNC, 0o600)
	if err != nil {
		return nil, read, fmt.Errorf("opening decision journal: %w", err)
	}
	// A journal just created must survive a power cut as a name too.
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, read, fmt.Errorf("opening decision journal %s: %w", path, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, read, fmt.Errorf("reading decision journal %s: %w", path, err)
	}
	good, decisions, problem := parseJournal(data)
	read.Decisions = decisions
	if good < int64(len(data)) {
		read.Discarded = int64(len(data)) - good
		read.Problem = problem
		read.KeptAt = fmt.Sprintf("%s.damaged-%d", path, now.Unix())
		if err := os.WriteFile(read.KeptAt, data[good:], 0o600); err != nil {
			f.Close()
			return nil, read, fmt.Errorf("decision journal %s: keeping %d damaged bytes at %s: %w", path, read.Discarded, read.KeptAt, err)
		}
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, read, fmt.Errorf("decision journal %s: cutting %d damaged bytes: %w", path, read.Discarded, err)
		}
	}
	return &Journal{path: path, f: f, size: good}, read, nil
}

// parseJournal returns the length of the whole records at the start of
// data, their decisions, and why the rest (if any) is not a record.
func parseJournal(data []byte) (int64, []JournalDecision, string) {
	var out []JournalDecision
	off := 0
	for off < len(data) {
		rest := data[off:]
		if len(rest) < frameHeader {
			return int64(off), out, fmt.Sprintf("offset %d: %d bytes, shorter than a record header", off, len(rest))
		}
		n := int(binary.LittleEndian.Uint32(rest[0:4]))
		sum := binary.LittleEndian.Uint32(rest[4:8])
		if n == 0 || n > maxRecord {
			return int64(off), out, fmt.Sprintf("offset %d: record length %d out of range", off, n)
		}
		if len(rest) < frameHeader+n {
			return int64(off), out, fmt.Sprintf("offset %d: record of %d bytes, %d present (torn append)", off, n, len(rest)-frameHeader)
		}
		payload := rest[frameHeader : frameHeader+n]
		if crc32.Checksum(payload, castagnoli) != sum {
			return int64(off), out, fmt.Sprintf("offset %d: record checksum mismatch", off)
		}
		d, err := decodeJournal(payload)
		if err != nil {
			return int64(off), out, fmt.Sprintf("offset %d: %v", off, err)
		}
		out = append(out, d)
		off += frameHeader + n
	}
	return int64(off), out, ""
}

// Append makes one decision durable: it returns once the record is on
// disk (the journal is O_DSYNC). A failed append leaves the journal as it
// was.
func (j *Journal) Append(d JournalDecision) error {
	if j.broken != nil {
		return fmt.Errorf("decision journal %s: %w", j.path, j.broken)
	}
	// The payload is encoded behind room for the frame's header.
	frame, err := appendJournal(make([]byte, frameHeader, 2048), d)
	if err != nil {
		return fmt.Errorf("decision journal %s: case %s: %w", j.path, d.Case.ID, err)
	}
	payload := frame[frameHeader:]
	binary.LittleEndian.PutUint32(frame[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[4:8], crc32.Checksum(payload, castagnoli))
	if _, err := j.f.Write(frame); err != nil {
		return j.cutBack(fmt.Errorf("decision journal %s: appending case %s: %w", j.path, d.Case.ID, err))
	}
	j.size += int64(len(frame))
	return nil
}

// cutBack removes what a failed append may have left and returns err.
func (j *Journal) cutBack(err error) error {
	if terr := j.f.Truncate(j.size); terr != nil {
		j.broken = fmt.Errorf("a failed append could not be cut back (%v): refusing further appends", terr)
		return fmt.Errorf("%w; %v", err, j.broken)
	}
	return err
}

// Size is the journal's length in bytes.
func (j *Journal) Size() int64 { return j.size }

// Reset empties the journal, once every record in it is in the store.
func (j *Journal) Reset() error {
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("resetting decision journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("resetting decision journal %s: %w", j.path, err)
	}
	j.size, j.broken = 0, nil
	return nil
}

// Close closes the file; the records stay for the next start.
func (j *Journal) Close() error { return j.f.Close() }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// appendJournal appends d's payload, JSON in the form journalJSON reads,
// to dst.
func appendJournal(dst []byte, d JournalDecision) ([]byte, error) {
	c := &d.Case
	if c.ID == "" {
		return nil, errors.New("a case without an ID")
	}
	if err := validState(c.State); err != nil {
		return nil, err
	}
	for _, a := range d.Intents {
		if a.CaseID != c.ID {
			return nil, fmt.Errorf("intent on %s names case %q, not %s", a.Resource, a.CaseID, c.ID)
		}
	}
	return appendJournalJSON(dst, &d), nil
}

func decodeJournal(payload []byte) (JournalDecision, error) {
	var rec journalJSON
	if err := json.Unmarshal(payload, &rec); err != nil {
		return JournalDecision{}, fmt.Errorf("decoding record: %w", err)
	}
	if rec.Version != journalVersion {
		return JournalDecision{}, fmt.Errorf("record version %d, this binary reads %d", rec.Version, journalVersion)
	}
	jc := rec.Case
	if jc.ID == "" {
		return JournalDecision{}, errors.New("record without a case ID")
	}
	opened, err := time.Parse(time.RFC3339Nano, jc.Opened)
	if err != nil {
		return JournalDecision{}, fmt.Errorf("case %s: opened: %w", jc.ID, err)
	}
	c := fault.Case{ID: jc.ID, Opened: opened.UTC(), Rule: jc.Rule, Diagnosis: fault.Diagnosis(jc.Diagnosis),
		Suspect: fault.Resource(jc.Suspect), FRU: jc.FRU, State: fault.CaseState(jc.State), Summary: jc.Summary}
	if err := validState(c.State); err != nil {
		return JournalDecision{}, fmt.Errorf("case %s: %w", jc.ID, err)
	}
	for _, r := range jc.Also {
		c.Also = append(c.Also, fault.Resource(r))
	}
	for i, e := range jc.Evidence {
		ev, err := e.evidence()
		if err != nil {
			return JournalDecision{}, fmt.Errorf("case %s: evidence %d: %w", jc.ID, i, err)
		}
		c.Evidence = append(c.Evidence, ev)
	}
	d := JournalDecision{Case: c}
	for i, a := range rec.Intents {
		t, err := time.Parse(time.RFC3339Nano, a.Time)
		if err != nil {
			return JournalDecision{}, fmt.Errorf("case %s: intent %d: time: %w", jc.ID, i, err)
		}
		d.Intents = append(d.Intents, fault.Action{CaseID: c.ID, Time: t.UTC(), Resource: fault.Resource(a.Resource),
			Kind: a.Kind, Outcome: fault.Outcome(a.Outcome), Detail: a.Detail})
	}
	return d, nil
}
