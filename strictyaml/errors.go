// Package strictyaml decodes one section of a YAML configuration file into
// a Go struct strictly: unknown keys, repeated keys, wrong types and bad
// durations are errors, every one of them reported at once and each naming
// the file, the line and the key path the user wrote ("rules.page.window"),
// never a Go type. The policy and the alert configuration share it, so a
// mistake reads the same wherever it is made in the file.
package strictyaml

import (
	"fmt"
	"strings"
)

// Error names where in which file a configuration went wrong:
// "selfprotect.yaml:12: rules.page.threshold: must be >= 1, got -3".
type Error struct {
	File  string // "" for a configuration built in code
	Line  int    // 0 when unknown (a default value, a whole-file problem)
	Field string // dotted key path, "" when the problem is not one key
	Msg   string
	// Kind is the sentinel errors.Is matches (policy.ErrInvalid,
	// alert.ErrInvalid), so callers tell a wrong file from an unreadable one.
	Kind error
}

func (e *Error) Error() string {
	s := ""
	switch {
	case e.File != "" && e.Line > 0:
		s = fmt.Sprintf("%s:%d: ", e.File, e.Line)
	case e.File != "":
		s = e.File + ": "
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Msg
}

// Is matches the error's Kind.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// Origin remembers where each key path was written, so validation that
// runs after decoding can still name file:line.
type Origin struct {
	File  string
	Lines map[string]int
	Kind  error
}

// NewOrigin is an empty origin for file whose errors match kind.
func NewOrigin(file string, kind error) Origin {
	return Origin{File: file, Lines: map[string]int{}, Kind: kind}
}

// Line is where path was written; for a key left out, the line of its
// nearest written parent, so the message still points into the file.
func (o Origin) Line(path string) int {
	line := o.Lines[path]
	for p := path; line == 0 && p != ""; {
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
		line = o.Lines[p]
	}
	return line
}

// Errorf is a problem with the value at field.
func (o Origin) Errorf(field, format string, args ...any) *Error {
	return &Error{File: o.File, Line: o.Line(field), Field: field, Msg: fmt.Sprintf(format, args...), Kind: o.Kind}
}
