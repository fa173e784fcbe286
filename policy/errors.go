package policy

import (
	"errors"
	"fmt"
)

// ErrInvalid is matched (errors.Is) by every error that says the policy
// itself is wrong, as opposed to the file being unreadable.
var ErrInvalid = errors.New("invalid policy")

// ConfigError names where in which file a policy went wrong:
// "policy.yaml:12: rules.page.threshold: must be >= 1, got -3".
type ConfigError struct {
	File  string // "" for a policy built in code
	Line  int    // 0 when unknown (a default value, a whole-file problem)
	Field string // dotted key path, "" when the problem is not one key
	Msg   string
}

func (e *ConfigError) Error() string {
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

// Is lets callers test errors.Is(err, ErrInvalid).
func (e *ConfigError) Is(target error) bool { return target == ErrInvalid }

// origin maps dotted key paths to the line they were written on.
type origin struct {
	file  string
	lines map[string]int
}

func (o origin) errorf(field, format string, args ...any) *ConfigError {
	return &ConfigError{File: o.file, Line: o.lines[field], Field: field, Msg: fmt.Sprintf(format, args...)}
}
