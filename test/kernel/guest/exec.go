package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// cmdExec runs a command (the daemon's CLI) and carries its output in the
// result: stdout as JSON when it parses (status --json, faulty --json),
// else as text. The step fails when the command exits non-zero.
func cmdExec(_ env, args []string) (map[string]any, error) {
	data, err := runOnce(args)
	return data, err
}

// cmdWaitExec re-runs a command every 100 ms until it exits 0 or TIMEOUT
// passes; it is how scenarios wait for the daemon to be armed or to act
// without guessing a delay.
func cmdWaitExec(_ env, args []string) (map[string]any, error) {
	timeout, err := time.ParseDuration(args[0])
	if err != nil {
		return nil, fmt.Errorf("parsing timeout %q: %w", args[0], err)
	}
	start := time.Now()
	for tries := 1; ; tries++ {
		data, err := runOnce(args[1:])
		data["tries"] = tries
		data["elapsed_ms"] = time.Since(start).Milliseconds()
		if err == nil {
			return data, nil
		}
		if time.Since(start) > timeout {
			return data, fmt.Errorf("still failing after %s: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func runOnce(argv []string) (map[string]any, error) {
	if len(argv) == 0 {
		return map[string]any{}, errors.New("no command given")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	data := map[string]any{"argv": strings.Join(argv, " "), "exit": cmd.ProcessState.ExitCode()}
	if out := bytes.TrimSpace(stdout.Bytes()); json.Valid(out) && len(out) > 0 {
		data["json"] = json.RawMessage(out)
	} else {
		data["stdout"] = tail(stdout.String(), 4000)
	}
	if stderr.Len() > 0 {
		data["stderr"] = tail(stderr.String(), 2000)
	}
	if err != nil {
		return data, fmt.Errorf("%s: %w", argv[0], err)
	}
	return data, nil
}

// tail keeps the end of long output: a console line is not the place for
// a whole log.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
