// Package exec runs a program for each alert: the alert in SELFPROTECT_*
// environment variables and as JSON on stdin. The dispatcher runs it off
// the daemon's paths (unlike rasdaemon's triggers, which block its event
// loop), its per-send timeout kills a hook that hangs together with its
// children, and its concurrency cap bounds how many run at once. A non-zero
// exit is an error carrying the status and the end of stderr, and is
// retried.
package exec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/selfprotect/selfprotect/alert"
)

// Notifier runs one command.
type Notifier struct {
	argv []string
}

// New builds the notifier; the program must exist and be executable now,
// so a typo fails at start instead of at the first alert.
func New(cfg alert.ExecConfig) (*Notifier, error) {
	if len(cfg.Command) == 0 {
		return nil, errors.New("empty command")
	}
	if _, err := osexec.LookPath(cfg.Command[0]); err != nil {
		return nil, hookError("hook", cfg.Command[0], err)
	}
	return &Notifier{argv: append([]string(nil), cfg.Command...)}, nil
}

// Env is the alert as environment variables.
func Env(a alert.Alert) []string {
	return []string{
		"SELFPROTECT_ALERT_ID=" + a.ID,
		"SELFPROTECT_CASE=" + a.Case,
		"SELFPROTECT_TRANSITION=" + string(a.Transition),
		"SELFPROTECT_SEVERITY=" + string(a.Severity),
		"SELFPROTECT_SUSPECT=" + a.Suspect,
		"SELFPROTECT_FRU=" + a.FRU,
		"SELFPROTECT_SUMMARY=" + a.Summary,
		"SELFPROTECT_EVIDENCE_COUNT=" + strconv.Itoa(a.EvidenceCount),
		"SELFPROTECT_HOST=" + a.Host,
		"SELFPROTECT_UNDO=" + a.Undo,
		"SELFPROTECT_TIME=" + a.Time.UTC().Format(time.RFC3339Nano),
	}
}

// stderrTail bounds how much of a hook's stderr goes into the error.
const stderrTail = 512

// killGrace is how long a killed hook's pipes may stay open (held by a
// grandchild) before Wait gives up on them.
const killGrace = 2 * time.Second

func (n *Notifier) Notify(ctx context.Context, a alert.Alert) (bool, error) {
	in, err := json.Marshal(a)
	if err != nil {
		return false, fmt.Errorf("encoding alert: %w", err)
	}
	cmd := osexec.CommandContext(ctx, n.argv[0], n.argv[1:]...)
	cmd.Env = append(os.Environ(), Env(a)...)
	cmd.Stdin = bytes.NewReader(append(in, '\n'))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// Its own process group, so the timeout kills what the hook started
	// too (a shell script's sleep, curl, ...).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killGrace
	err = cmd.Run()
	if err == nil {
		return false, nil
	}
	tail := strings.TrimSpace(stderr.String())
	if len(tail) > stderrTail {
		tail = "..." + tail[len(tail)-stderrTail:]
	}
	var exitErr *osexec.ExitError
	switch {
	case ctx.Err() != nil:
		return true, fmt.Errorf("hook %s killed: %w", n.argv[0], ctx.Err())
	case errors.As(err, &exitErr):
		if tail != "" {
			return true, fmt.Errorf("hook %s: %w: %s", n.argv[0], err, tail)
		}
		return true, fmt.Errorf("hook %s: %w", n.argv[0], err)
	}
	return true, hookError("starting hook", n.argv[0], err)
}

// hookError words a failure to find or start the program with one
// context: os/exec's *Error ("exec: NAME: ...") and the *fs.PathError
// under it ("stat NAME: ...", "fork/exec NAME: ...") would each name the
// program again. The causes stay in the chain for errors.Is.
func hookError(what, name string, err error) error {
	var ee *osexec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == name {
		err = pe.Err
	}
	return fmt.Errorf("%s %s: %w", what, name, err)
}
