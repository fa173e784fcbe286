package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// cmdStampRun runs CMD with its stdout and stderr prefixed, line by line,
// by the CLOCK_MONOTONIC µs at which the line was read, into LOG. The
// daemon's own log timestamps have one-second resolution; these let the
// latency breakdown place "diagnosed" and the action outcome against the
// injection's mono_us. SIGTERM and SIGINT are passed on to CMD, so the
// script can stop the daemon through this process's PID.
func cmdStampRun(_ env, args []string) (map[string]any, error) {
	out, err := os.Create(args[0])
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", args[0], err)
	}
	defer out.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating a pipe: %w", err)
	}
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdout, cmd.Stderr = w, w
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", args[1], err)
	}
	w.Close()
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	copied := make(chan int)
	go func() {
		lines := 0
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		bw := bufio.NewWriter(out)
		for sc.Scan() {
			fmt.Fprintf(bw, "%d %s\n", monoMicros(), sc.Text())
			lines++
			// Flush per line so the log is whole whenever the script reads it.
			bw.Flush()
		}
		copied <- lines
	}()
	err = cmd.Wait()
	lines := <-copied
	data := map[string]any{"exit": cmd.ProcessState.ExitCode(), "lines": lines, "pid": cmd.Process.Pid}
	if err != nil {
		return data, fmt.Errorf("%s: %w", args[1], err)
	}
	return data, nil
}
