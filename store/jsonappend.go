package store

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/selfprotect/selfprotect/fault"
)

// The decision journal's record is written on the way from a deciding
// error to the kernel write. encoding/json reaches it by reflection, which
// under emulation cost more than half a millisecond of that way (with its
// code and type caches to page in again after every system call); these
// appenders write the same bytes directly. TestJournalEncodingIsJSON holds
// them to json.Marshal's output.

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as json.Marshal quotes it: HTML
// characters and control characters as \u00XX (but \b \f \n \r \t), an
// invalid UTF-8 byte as \ufffd, and U+2028/U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonObject appends one object's members, with the commas between them.
type jsonObject struct {
	b     []byte
	first bool
}

func openObject(b []byte) jsonObject { return jsonObject{b: append(b, '{'), first: true} }

func (o *jsonObject) key(k string) {
	if !o.first {
		o.b = append(o.b, ',')
	}
	o.first = false
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *jsonObject) str(k, v string) {
	o.key(k)
	o.b = appendJSONString(o.b, v)
}

// strOmit is str for a field tagged omitempty.
func (o *jsonObject) strOmit(k, v string) {
	if v != "" {
		o.str(k, v)
	}
}

func (o *jsonObject) int(k string, v int64) {
	o.key(k)
	o.b = strconv.AppendInt(o.b, v, 10)
}

func (o *jsonObject) close() []byte { return append(o.b, '}') }

func (o *jsonObject) uint(k string, v uint64) {
	o.key(k)
	o.b = strconv.AppendUint(o.b, v, 10)
}

// time appends t in UTC as RFC 3339 with nanoseconds: digits and "-:.TZ",
// nothing JSON escapes.
func (o *jsonObject) time(k string, t time.Time) {
	o.key(k)
	o.b = append(o.b, '"')
	o.b = t.UTC().AppendFormat(o.b, time.RFC3339Nano)
	o.b = append(o.b, '"')
}

// hex appends v as a "0x..." string, as the store writes registers.
func (o *jsonObject) hex(k string, v uint64) {
	o.key(k)
	o.b = append(o.b, '"', '0', 'x')
	o.b = strconv.AppendUint(o.b, v, 16)
	o.b = append(o.b, '"')
}

// appendJournalJSON appends d in the journal's form (journalJSON) as
// json.Marshal would, straight from the case: no record in between.
func appendJournalJSON(b []byte, d *JournalDecision) []byte {
	o := openObject(b)
	o.int("v", journalVersion)
	o.key("case")
	o.b = appendJournalCase(o.b, &d.Case)
	o.key("intents")
	if len(d.Intents) == 0 {
		o.b = append(o.b, "null"...)
	} else {
		o.b = append(o.b, '[')
		for i := range d.Intents {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			a := &d.Intents[i]
			io := openObject(o.b)
			io.time("time", a.Time)
			io.str("resource", string(a.Resource))
			io.str("kind", a.Kind)
			io.str("outcome", string(a.Outcome))
			io.strOmit("detail", a.Detail)
			o.b = io.close()
		}
		o.b = append(o.b, ']')
	}
	return o.close()
}

func appendJournalCase(b []byte, c *fault.Case) []byte {
	o := openObject(b)
	o.str("id", c.ID)
	o.time("opened", c.Opened)
	o.str("rule", c.Rule)
	o.str("diagnosis", string(c.Diagnosis))
	o.str("suspect", string(c.Suspect))
	if len(c.Also) > 0 {
		o.key("also")
		o.b = append(o.b, '[')
		for i, a := range c.Also {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			o.b = appendJSONString(o.b, string(a))
		}
		o.b = append(o.b, ']')
	}
	o.strOmit("fru", c.FRU)
	o.str("state", string(c.State))
	o.strOmit("summary", c.Summary)
	if len(c.Evidence) > 0 {
		o.key("evidence")
		o.b = append(o.b, '[')
		for i := range c.Evidence {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			o.b = appendEvidenceJSON(o.b, &c.Evidence[i])
		}
		o.b = append(o.b, ']')
	}
	return o.close()
}

// appendEvidenceJSON appends e in the form evidenceJSON gives it
// (toEvidenceJSON).
func appendEvidenceJSON(b []byte, e *fault.Evidence) []byte {
	o := openObject(b)
	o.time("time", e.Time)
	o.str("source", string(e.Source))
	o.str("severity", e.Severity.String())
	o.str("class", e.Class.String())
	o.uint("count", uint64(e.Count))
	o.int("cpu", int64(e.CPU))
	o.int("bank", int64(e.Bank))
	o.hex("status", e.Status)
	o.hex("addr", e.Addr)
	o.strOmit("dimm", e.DIMM)
	o.strOmit("summary", e.Summary)
	return o.close()
}
