package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// unixNano maps the zero time to 0: time.Time{}.UnixNano() overflows int64.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// bits and unbits carry a uint64 through SQLite's signed INTEGER unchanged.
func bits(u uint64) int64   { return int64(u) }
func unbits(i int64) uint64 { return uint64(i) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func parseVendor(s string) (fault.Vendor, error) {
	for _, v := range []fault.Vendor{fault.VendorUnknown, fault.VendorIntel, fault.VendorAMD} {
		if v.String() == s {
			return v, nil
		}
	}
	return fault.VendorUnknown, fmt.Errorf("unknown vendor %q", s)
}

// evidenceJSON fixes the stored form of fault.Evidence independently of the
// Go struct: renaming a field there must not orphan old rows. Registers are
// hex strings because JSON numbers above 2^53 lose bits in most readers.
type evidenceJSON struct {
	Time     string `json:"time"`
	Source   string `json:"source"`
	Severity string `json:"severity"`
	Class    string `json:"class"`
	Count    uint32 `json:"count"`
	CPU      int    `json:"cpu"`
	Bank     int    `json:"bank"`
	Status   string `json:"status"`
	Addr     string `json:"addr"`
	DIMM     string `json:"dimm,omitempty"`
	Summary  string `json:"summary,omitempty"`
}

func marshalEvidence(ev []fault.Evidence) (string, error) {
	out := make([]evidenceJSON, len(ev))
	for i, e := range ev {
		out[i] = toEvidenceJSON(e)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return "", fmt.Errorf("encoding evidence: %w", err)
	}
	return string(b), nil
}

func toEvidenceJSON(e fault.Evidence) evidenceJSON {
	return evidenceJSON{
		Time: e.Time.UTC().Format(time.RFC3339Nano), Source: string(e.Source),
		Severity: e.Severity.String(), Class: e.Class.String(), Count: e.Count,
		CPU: e.CPU, Bank: e.Bank, Status: fault.Hex(e.Status), Addr: fault.Hex(e.Addr),
		DIMM: e.DIMM, Summary: e.Summary,
	}
}

func unmarshalEvidence(s string) ([]fault.Evidence, error) {
	var in []evidenceJSON
	if err := json.Unmarshal([]byte(s), &in); err != nil {
		return nil, fmt.Errorf("decoding evidence: %w", err)
	}
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]fault.Evidence, len(in))
	for i, j := range in {
		e, err := j.evidence()
		if err != nil {
			return nil, fmt.Errorf("decoding evidence %d: %w", i, err)
		}
		out[i] = e
	}
	return out, nil
}

func (j evidenceJSON) evidence() (fault.Evidence, error) {
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return fault.Evidence{}, err
	}
	sev, err := fault.ParseSeverity(j.Severity)
	if err != nil {
		return fault.Evidence{}, err
	}
	class, err := fault.ParseClass(j.Class)
	if err != nil {
		return fault.Evidence{}, err
	}
	status, err := strconv.ParseUint(j.Status, 0, 64)
	if err != nil {
		return fault.Evidence{}, fmt.Errorf("status %q: %w", j.Status, err)
	}
	addr, err := strconv.ParseUint(j.Addr, 0, 64)
	if err != nil {
		return fault.Evidence{}, fmt.Errorf("addr %q: %w", j.Addr, err)
	}
	return fault.Evidence{
		Time: t.UTC(), Source: fault.Source(j.Source), Severity: sev, Class: class,
		Count: j.Count, CPU: j.CPU, Bank: j.Bank, Status: status, Addr: addr,
		DIMM: j.DIMM, Summary: j.Summary,
	}, nil
}

func marshalStrings[T ~string](v []T) (string, error) {
	if v == nil {
		v = []T{}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func unmarshalStrings[T ~string](s string) ([]T, error) {
	var v []T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	if len(v) == 0 {
		return nil, nil
	}
	return v, nil
}
