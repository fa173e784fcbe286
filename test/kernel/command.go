package kernel

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// CommandError is a failed host command with what it printed on stderr,
// because apt and dpkg explain themselves only there.
type CommandError struct {
	Args   []string
	Err    error
	Stderr string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("running %s: %v\n%s", strings.Join(e.Args, " "), e.Err, e.Stderr)
}

func (e *CommandError) Unwrap() error { return e.Err }

// Reason is the one line of stderr that says why the command failed: apt's
// "E:" lines when there are any (joined), else the last line printed, else
// the exit status.
func (e *CommandError) Reason() string {
	var errs []string
	last := ""
	for _, l := range strings.Split(e.Stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		last = l
		if strings.HasPrefix(l, "E:") {
			errs = append(errs, l)
		}
	}
	switch {
	case len(errs) > 0:
		return strings.Join(errs, "; ")
	case last != "":
		return last
	default:
		return e.Err.Error()
	}
}

// runFunc runs a host command in dir (the current directory when empty)
// and returns its stdout; the suite's apt calls go through one so tests can
// play an archive without a network.
type runFunc func(ctx context.Context, dir, name string, args ...string) ([]byte, error)

// runCommand is the real runFunc. A failure is a *CommandError.
func runCommand(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &CommandError{Args: append([]string{name}, args...), Err: err, Stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), nil
}
