package replay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// The trace format is JSON lines: one JSON object per line, blank lines and
// lines starting with '#' ignored. A line with "time" is one error report:
//
//	{"time":"2026-03-01T10:00:00Z","host":"db-17","class":"memory","severity":"corrected",
//	 "addr":"0x2d94040","cpu":3,"bank":7,"mc":0,"dimm":"DIMM_A1","count":1}
//
// A line without "time" describes a host (it must come before that host's
// first error; hosts without one get the replay's defaults):
//
//	{"host":"db-17","ram_mib":262144,"cpus":64,"threads_per_core":2}
//
// Error fields (all but time, host, class and severity are optional):
//
//	time             RFC 3339 with optional fraction: when the error was logged
//	host             non-empty name; rate engines and budgets are per host
//	class            memory, cache, tlb, bus, pcie, other
//	severity         corrected, deferred, uncorrected-recoverable, fatal
//	addr             physical byte address as a hex string ("0x...")
//	addr_lsb         lowest valid address bit, 0-63 (default 6, a cache line);
//	                 above 12 the address does not name one 4 KiB page
//	cpu, bank, socket, mc   non-negative integers
//	dimm             DIMM label as EDAC names it (with mc: the DIMM's identity)
//	row              DRAM row key when the platform decodes it (the row rule)
//	level            cache level 0, 1 or 2 (MCACOD L0-L2); absent = generic
//	core_bank        true when the bank is core-private (a CPU offline helps)
//	count            errors this record stands for, >= 1 (default 1)
//	source           mce_record, mc_event or edac_poll: the path that reported
//	                 it (default: mc_event when dimm is set, else mce_record)
//
// Unknown keys, wrong types and impossible values are errors naming the
// line and the field.

// Record is one line of a trace.
type Record struct {
	Line int
	Host string
	// IsHost marks a host description; Spec holds it and Event is unset.
	IsHost bool
	Spec   HostSpec
	Event  fault.Event
}

// HostSpec is what budgets need to know about a host.
type HostSpec struct {
	RAMMiB         uint64
	CPUs           int
	ThreadsPerCore int
}

// TotalPages is the host's RAM in 4 KiB pages.
func (h HostSpec) TotalPages() uint64 { return h.RAMMiB * (1 << 20) / fault.PageSize }

// Validate reports an impossible host description.
func (h HostSpec) Validate() error {
	switch {
	case h.RAMMiB == 0:
		return errors.New("ram_mib must be > 0")
	case h.CPUs < 1:
		return errors.New("cpus must be >= 1")
	case h.ThreadsPerCore < 1:
		return errors.New("threads_per_core must be >= 1")
	case h.CPUs%h.ThreadsPerCore != 0:
		return fmt.Errorf("cpus (%d) must be a multiple of threads_per_core (%d)", h.CPUs, h.ThreadsPerCore)
	}
	return nil
}

// LineError is a bad trace line.
type LineError struct {
	File  string
	Line  int
	Field string // "" when the line as a whole is wrong
	Msg   string
}

func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: field %q: %s", e.File, e.Line, e.Field, e.Msg)
}

// wire is the JSON shape of a line. Pointers tell absent from zero.
type wire struct {
	Time           *string `json:"time"`
	Host           *string `json:"host"`
	Class          *string `json:"class"`
	Severity       *string `json:"severity"`
	Addr           *string `json:"addr"`
	AddrLSB        *int    `json:"addr_lsb"`
	CPU            *int    `json:"cpu"`
	Bank           *int    `json:"bank"`
	Socket         *int    `json:"socket"`
	MC             *int    `json:"mc"`
	DIMM           *string `json:"dimm"`
	Row            *string `json:"row"`
	Level          *int    `json:"level"`
	CoreBank       *bool   `json:"core_bank"`
	Count          *int64  `json:"count"`
	Source         *string `json:"source"`
	RAMMiB         *int64  `json:"ram_mib"`
	CPUs           *int    `json:"cpus"`
	ThreadsPerCore *int    `json:"threads_per_core"`
}

// Reader streams records from a trace without holding it in memory.
type Reader struct {
	name string
	sc   *bufio.Scanner
	line int
}

// maxLine bounds one line; a longer one is an error, not a silent split.
const maxLine = 64 << 10

// NewReader reads a trace; name is used in error messages.
func NewReader(name string, r io.Reader) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	return &Reader{name: name, sc: sc}
}

// Next returns the next record, io.EOF at the end, or a *LineError.
func (r *Reader) Next(rec *Record) error {
	for r.sc.Scan() {
		r.line++
		b := bytes.TrimSpace(r.sc.Bytes())
		if len(b) == 0 || b[0] == '#' {
			continue
		}
		return ParseLine(r.name, r.line, b, rec)
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &LineError{File: r.name, Line: r.line + 1, Msg: fmt.Sprintf("line longer than %d bytes", maxLine)}
		}
		return fmt.Errorf("reading %s: %w", r.name, err)
	}
	return io.EOF
}

// ParseLine decodes one non-blank trace line into rec.
func ParseLine(file string, line int, b []byte, rec *Record) error {
	fail := func(field, format string, args ...any) error {
		return &LineError{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return jsonError(file, line, err)
	}
	if dec.More() {
		return fail("", "more than one JSON value on the line")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fail("", "trailing data after the JSON object")
	}
	*rec = Record{Line: line}
	if w.Host == nil || *w.Host == "" {
		return fail("host", "missing or empty")
	}
	rec.Host = *w.Host
	if w.Time == nil {
		return parseHost(&w, rec, fail)
	}
	if w.RAMMiB != nil || w.CPUs != nil || w.ThreadsPerCore != nil {
		return fail("", "an error line (with time) cannot describe the host (ram_mib, cpus, threads_per_core)")
	}
	t, err := time.Parse(time.RFC3339Nano, *w.Time)
	if err != nil {
		return fail("time", "want RFC 3339 like 2026-03-01T10:00:00Z, got %q", *w.Time)
	}
	ev := fault.NewEvent(fault.SourceTraceMCE, t)
	ev.Recorded = t
	if w.Class == nil {
		return fail("class", "missing")
	}
	if ev.Class, err = fault.ParseClass(*w.Class); err != nil {
		return fail("class", "%v", err)
	}
	if w.Severity == nil {
		return fail("severity", "missing")
	}
	if ev.Severity, err = fault.ParseSeverity(*w.Severity); err != nil {
		return fail("severity", "%v", err)
	}
	if w.Addr != nil {
		s := *w.Addr
		if !strings.HasPrefix(s, "0x") && !strings.HasPrefix(s, "0X") {
			return fail("addr", "want a hex string like \"0x2d94040\", got %q", s)
		}
		if ev.PhysAddr, err = strconv.ParseUint(s[2:], 16, 64); err != nil {
			return fail("addr", "bad hex address %q", s)
		}
		ev.AddrValid, ev.AddrLSB = true, 6
	}
	if w.AddrLSB != nil {
		if w.Addr == nil {
			return fail("addr_lsb", "given without addr")
		}
		if *w.AddrLSB < 0 || *w.AddrLSB > 63 {
			return fail("addr_lsb", "must be 0-63, got %d", *w.AddrLSB)
		}
		ev.AddrLSB = uint8(*w.AddrLSB)
	}
	for _, f := range []struct {
		name string
		v    *int
		dst  *int
	}{{"cpu", w.CPU, &ev.CPU}, {"bank", w.Bank, &ev.Bank}, {"socket", w.Socket, &ev.Socket}, {"mc", w.MC, &ev.MC}} {
		if f.v == nil {
			continue
		}
		if *f.v < 0 {
			return fail(f.name, "must be >= 0, got %d", *f.v)
		}
		*f.dst = *f.v
	}
	if w.DIMM != nil {
		if *w.DIMM == "" {
			return fail("dimm", "empty label (omit the field instead)")
		}
		ev.DIMMLabel = *w.DIMM
		if ev.MC == fault.Unknown {
			// The engine keys DIMMs by controller and label; a trace that
			// names only labels still needs one key per DIMM.
			ev.MC = 0
		}
	}
	if w.Row != nil {
		if *w.Row == "" {
			return fail("row", "empty row key (omit the field instead)")
		}
		ev.Row = *w.Row
	}
	if w.Level != nil {
		if *w.Level < 0 || *w.Level > 2 {
			return fail("level", "must be 0, 1 or 2 (omit it for a generic level), got %d", *w.Level)
		}
		ev.CacheLevel = *w.Level
	}
	if w.CoreBank != nil {
		ev.CoreBank = *w.CoreBank
	}
	if w.Count != nil {
		if *w.Count < 1 || *w.Count > math.MaxUint32 {
			return fail("count", "must be between 1 and %d, got %d", uint32(math.MaxUint32), *w.Count)
		}
		ev.Count = uint32(*w.Count)
	}
	switch {
	case w.Source == nil && ev.DIMMLabel != "":
		ev.Source = fault.SourceTraceMC
	case w.Source == nil:
	case *w.Source == "mce_record":
	case *w.Source == "mc_event":
		ev.Source = fault.SourceTraceMC
	case *w.Source == "edac_poll":
		ev.Source = fault.SourceEDACPoll
	default:
		return fail("source", "want mce_record, mc_event or edac_poll, got %q", *w.Source)
	}
	rec.Event = ev
	return nil
}

func parseHost(w *wire, rec *Record, fail func(field, format string, args ...any) error) error {
	switch {
	case w.Class != nil, w.Severity != nil, w.Addr != nil, w.AddrLSB != nil, w.CPU != nil, w.Bank != nil,
		w.Socket != nil, w.MC != nil, w.DIMM != nil, w.Row != nil, w.Level != nil, w.CoreBank != nil,
		w.Count != nil, w.Source != nil:
		return fail("time", "missing (a line without time describes a host and takes only host, ram_mib, cpus, threads_per_core)")
	case w.RAMMiB == nil:
		return fail("ram_mib", "missing in a host line")
	case *w.RAMMiB < 1:
		return fail("ram_mib", "must be >= 1, got %d", *w.RAMMiB)
	case w.CPUs == nil:
		return fail("cpus", "missing in a host line")
	}
	spec := HostSpec{RAMMiB: uint64(*w.RAMMiB), CPUs: *w.CPUs, ThreadsPerCore: 1}
	if w.ThreadsPerCore != nil {
		spec.ThreadsPerCore = *w.ThreadsPerCore
	}
	if err := spec.Validate(); err != nil {
		return fail("", "%v", err)
	}
	rec.IsHost, rec.Spec = true, spec
	return nil
}

// jsonError turns encoding/json's errors into a line error naming the field.
func jsonError(file string, line int, err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return &LineError{File: file, Line: line, Field: te.Field, Msg: fmt.Sprintf("want a %s, got JSON %s", te.Type, te.Value)}
	case errors.As(err, &se):
		return &LineError{File: file, Line: line, Msg: fmt.Sprintf("bad JSON at byte %d: %v", se.Offset, err)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return &LineError{File: file, Line: line, Field: field, Msg: "unknown field"}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &LineError{File: file, Line: line, Msg: "truncated JSON object"}
	}
	return &LineError{File: file, Line: line, Msg: err.Error()}
}
