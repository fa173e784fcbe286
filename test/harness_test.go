// Package test holds the end-to-end suites: the real selfprotect binary runs
// against a simulated machine (sim/) with no root and no real kernel, and
// every assertion reads both what the daemon says and what the fake kernel
// was told to do.
package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/daemon"
	"github.com/selfprotect/selfprotect/jsonout"
	"github.com/selfprotect/selfprotect/sim"
)

var update = flag.Bool("update", false, "rewrite golden files")

// binary is the selfprotect under test: $SELFPROTECT_BIN (make sets it) or a
// fresh build.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	binary = os.Getenv("SELFPROTECT_BIN")
	cleanup := func() {}
	if binary == "" {
		dir, err := os.MkdirTemp("", "selfprotect-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cleanup = func() { os.RemoveAll(dir) }
		binary = filepath.Join(dir, "selfprotect")
		build := exec.Command("go", "build", "-o", binary, "../cmd/selfprotect")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building selfprotect: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// machine is one simulated server with its fake kernel running.
type machine struct {
	*sim.Machine
	stop context.CancelFunc
	done chan struct{}
}

func newMachine(t *testing.T, prof sim.Profile) *machine {
	t.Helper()
	m, err := sim.Build(filepath.Join(t.TempDir(), "machine"), prof)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	mm := &machine{Machine: m, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(mm.done)
		if err := m.Serve(ctx); err != nil {
			t.Errorf("simulator: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-mm.done
		m.Close()
	})
	return mm
}

// read returns a file of the fake kernel as of now: on a machine this
// process serves, Sync first applies what the daemon wrote since Serve's
// last pass (cpuN/online into the online and offline lists), which a
// starved Serve goroutine may not have done yet when settle returns. A
// simulator in another process (done is nil) syncs itself.
func (m *machine) read(t *testing.T, rel string) string {
	t.Helper()
	if m.done != nil {
		require.NoError(t, m.Sync())
	}
	b, err := os.ReadFile(filepath.Join(m.Dir(), rel))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

func (m *machine) write(t *testing.T, rel, value string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(m.Dir(), rel), []byte(value+"\n"), 0o644))
}

// daemonProc is one `selfprotect run` process.
type daemonProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	state  string
	socket string
	flags  []string // global flags for CLI calls
	log    *lockedBuffer
	exited chan error
	// m and simPages (its trace pages written before this daemon started)
	// let settle wait for every page written since.
	m        *machine
	simPages uint64
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type daemonOpts struct {
	policy string // YAML text; "" = built-in policy
	state  string // reuse a state dir (restart); "" = new
	args   []string
	env    []string // added to the daemon's environment
	// health is --health-interval: "" = 1s (tests wait seconds, not the
	// production interval, for a problem to show), "default" = the
	// daemon's own.
	health string
}

func pathFlags(m *machine) []string {
	d := m.Dir()
	return []string{"--sysfs", d + "/sys", "--procfs", d + "/proc", "--tracefs", d + "/sys/kernel/tracing",
		"--debugfs", d + "/sys/kernel/debug", "--devfs", d + "/dev"}
}

// startDaemon runs the binary against m and waits until it is armed.
func startDaemon(t *testing.T, m *machine, o daemonOpts) *daemonProc {
	t.Helper()
	d := launchDaemon(t, m, o)
	st := d.waitArmed()
	if m.Profile().EDAC {
		d.waitSourceArmed(st, "edac-poll")
	}
	return d
}

// waitSourceArmed waits for one source to be armed. Sources open one
// after another on the main loop, so status can say armed (tracefs) while
// the EDAC poller has not taken its baseline yet: errors injected then
// would be folded into the baseline as history (CI once saw
// edac_credited=0 for that under a load average of 44).
func (d *daemonProc) waitSourceArmed(st *daemon.Status, name string) {
	d.t.Helper()
	const limit = 60 * time.Second
	deadline := time.Now().Add(limit)
	for {
		for _, s := range st.Sources {
			if s.Name == name && s.State == daemon.SourceArmed {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("source %s not armed within %s: %+v\n%s", name, limit, st.Sources, d.log.String())
		}
		time.Sleep(20 * time.Millisecond)
		st = d.status()
	}
}

func launchDaemon(t *testing.T, m *machine, o daemonOpts) *daemonProc {
	t.Helper()
	state := o.state
	if state == "" {
		state = filepath.Join(t.TempDir(), "state")
	}
	// Unix socket paths are limited to 108 bytes; TempDir paths can be long.
	sockDir, err := os.MkdirTemp("", "sp")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	d := &daemonProc{t: t, state: state, socket: filepath.Join(sockDir, "sp.sock"), log: &lockedBuffer{}, exited: make(chan error, 1),
		m: m, simPages: m.Stats().Pages}
	d.flags = append(pathFlags(m), "--state", state, "--socket", d.socket)
	args := append([]string{"run", "--log-level", "debug", "--metrics-listen", "127.0.0.1:0"}, d.flags...)
	if o.policy != "" {
		p := filepath.Join(t.TempDir(), "policy.yaml")
		require.NoError(t, os.WriteFile(p, []byte(o.policy), 0o644))
		args = append(args, "--config", p)
	}
	switch o.health {
	case "":
		args = append(args, "--health-interval", "1s")
	case "default":
	default:
		args = append(args, "--health-interval", o.health)
	}
	args = append(args, o.args...)
	d.cmd = exec.Command(binary, args...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if len(o.env) > 0 {
		d.cmd.Env = append(os.Environ(), o.env...)
	}
	require.NoError(t, d.cmd.Start())
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log.String())
		}
	})
	return d
}

func (d *daemonProc) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("daemon did not stop within 10 s of SIGINT")
	}
}

// waitArmed waits for `status` to answer with armed sources. The bound
// only guards against a hang: arming waits for the simulator to populate
// the trace instance, which took up to 2.8 s on a loaded 2-core host.
func (d *daemonProc) waitArmed() *daemon.Status {
	d.t.Helper()
	const limit = 60 * time.Second
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.exited:
			d.t.Fatalf("daemon exited before arming: %v\n%s", err, d.log.String())
		default:
		}
		resp, err := daemon.Call(d.socket, daemon.Request{Command: "status"}, time.Second)
		if err == nil && resp.Status.Armed {
			return resp.Status
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.t.Fatalf("daemon not armed within %s\n%s", limit, d.log.String())
	return nil
}

func (d *daemonProc) status() *daemon.Status {
	d.t.Helper()
	resp, err := daemon.Call(d.socket, daemon.Request{Command: "status"}, 30*time.Second)
	require.NoError(d.t, err)
	return resp.Status
}

// settle waits until the daemon has read and acted on everything: every
// trace page the simulator wrote since the daemon started read, then
// nothing new received and no action pending for `quiet`. Quiet alone
// cannot tell a reader that has not woken yet from one with nothing left.
func (d *daemonProc) settle(quiet time.Duration) *daemon.Status {
	d.t.Helper()
	var last uint64
	var lastPages uint64
	stable := time.Now()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		s := d.status()
		unread := s.Events.TracePages < d.m.Stats().Pages-d.simPages
		if unread || s.Events.Queued > 0 || s.Events.Received != last || s.Events.TracePages != lastPages || s.Pending > 0 || s.Events.HeldDeltas > 0 {
			last, lastPages = s.Events.Received, s.Events.TracePages
			stable = time.Now()
		} else if time.Since(stable) >= quiet {
			return s
		}
		time.Sleep(25 * time.Millisecond)
	}
	d.t.Fatalf("daemon did not settle within 90 s\n%s", d.log.String())
	return nil
}

// cli runs a selfprotect subcommand against this daemon's state and socket.
func (d *daemonProc) cli(args ...string) (string, int) {
	d.t.Helper()
	cmd := exec.Command(binary, append(args, d.flags...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	var ex *exec.ExitError
	if errors.As(err, &ex) {
		code = ex.ExitCode()
	} else {
		require.NoError(d.t, err)
	}
	return string(out), code
}

// faulty reads `faulty --all --json`, checked against the published
// schema on every call: each suite that looks at cases checks the real
// output too.
func (d *daemonProc) faulty() []jsonout.Case {
	d.t.Helper()
	out, code := d.cli("faulty", "--all", "--json")
	require.Equal(d.t, 0, code, out)
	require.NoError(d.t, jsonout.Validate(jsonSchema(d.t), "faulty", []byte(out)), out)
	var r []jsonout.Case
	require.NoError(d.t, json.Unmarshal([]byte(out), &r), out)
	return r
}

func jsonSchema(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../doc/json-schema.json")
	require.NoError(t, err)
	return b
}

func requireGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "golden file missing: run go test ./test/ -update")
	require.Equal(t, string(want), got, "golden %s differs (go test ./test/ -run %s -update rewrites it)", path, t.Name())
}
