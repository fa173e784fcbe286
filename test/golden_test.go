package test

import (
	"context"
	byteorder "encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/selfprotect/selfprotect/sim"
)

// Golden end-to-end tests: testdata/golden/NAME/{scenario.yaml, policy.yaml
// (optional), golden.txt}. The scenario's profile builds the machine; the
// golden file holds the cases, actions and what the fake kernel did.
// Regenerate with: go test ./test/ -run TestGolden -update
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/golden/*")
	require.NoError(t, err)
	require.NotEmpty(t, dirs)
	for _, dir := range dirs {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sc, err := sim.LoadScenario(filepath.Join(dir, "scenario.yaml"))
			require.NoError(t, err)
			policy, _ := os.ReadFile(filepath.Join(dir, "policy.yaml"))
			m := newMachine(t, sc.Profile)
			// Health once a minute: held counter deltas and storms
			// settle on the daemon's own busy tick, not on the health
			// check.
			d := startDaemon(t, m, daemonOpts{health: "1m", policy: string(policy)})
			require.NoError(t, m.Play(context.Background(), sc))
			var polls *edacReads
			if m.Profile().EDAC {
				polls = watchEDACReads(t, m)
			}
			st := d.settle(time.Second)
			if polls != nil {
				// The EDAC poller runs on its own ticker: quiet alone does
				// not say it has read the counters Play left (a late poll
				// once made edac_credited 0 instead of 1). The first read
				// after Play starts a poll that sees them all; the second
				// starts only once the first has handed its events over.
				polls.wait(t, 2)
				st = d.settle(time.Second)
			}
			got := render(t, m, d)
			got += fmt.Sprintf("events: counted=%d errors=%d merged=%d edac_credited=%d first_by=%v undecodable=%d storming=%v\n",
				st.Events.Counted, st.Events.Errors, st.Events.Merged, st.Events.EDACCredited, st.Events.FirstBy, st.Events.Undecodable, st.Storming)
			requireGolden(t, filepath.Join(dir, "golden.txt"), got)
		})
	}
}

// render is the golden view: cases sorted by suspect and diagnosis (their
// UUIDs and times vary), each with its actions, then the fake kernel's state.
func render(t *testing.T, m *machine, d *daemonProc) string {
	t.Helper()
	cases := d.faulty()
	sort.SliceStable(cases, func(i, j int) bool {
		if cases[i].Suspect != cases[j].Suspect {
			return cases[i].Suspect < cases[j].Suspect
		}
		return cases[i].Diagnosis < cases[j].Diagnosis
	})
	var b strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&b, "case %s suspect=%s fru=%q state=%s rule=%s evidence=%d\n",
			c.Diagnosis, c.Suspect, c.FRU, c.State, c.Rule, len(c.Evidence))
		for _, a := range c.Actions {
			fmt.Fprintf(&b, "  action %s %s %s", a.Kind, a.Resource, a.Outcome)
			if len(a.Violations) > 0 {
				fmt.Fprintf(&b, " violations=%s", strings.Join(a.Violations, ","))
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "kernel: cpus online=%s offline=%s\n",
		m.read(t, "sys/devices/system/cpu/online"), m.read(t, "sys/devices/system/cpu/offline"))
	var offlined []string
	for _, o := range m.Offlined() {
		offlined = append(offlined, fmt.Sprintf("kernel: %s offline pfn=%#x poisoned=%v\n", o.Kind, o.PFN, o.Poisoned()))
	}
	sort.Strings(offlined) // the order of concurrent writes is not part of the contract
	// Repeats (CEC offlining a poisoned page again and again under a
	// storm) are one line with their count.
	for i := 0; i < len(offlined); {
		j := i
		for j < len(offlined) && offlined[j] == offlined[i] {
			j++
		}
		if n := j - i; n > 1 {
			fmt.Fprintf(&b, "%s x%d\n", strings.TrimSuffix(offlined[i], "\n"), n)
		} else {
			b.WriteString(offlined[i])
		}
		i = j
	}
	return b.String()
}

// edacReads counts the daemon's reads of mc0/ce_count, the first counter
// its EDAC poller reads in every poll. The watch is on the directory: the
// simulator replaces the file at every write.
type edacReads struct {
	fd   int
	seen int
}

func watchEDACReads(t *testing.T, m *machine) *edacReads {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	_, err = unix.InotifyAddWatch(fd, filepath.Join(m.Dir(), "sys/devices/system/edac/mc/mc0"), unix.IN_ACCESS)
	require.NoError(t, err)
	return &edacReads{fd: fd}
}

// wait returns once n reads were seen since the watch began; the bound
// only guards against a hang (the golden policies poll every second).
func (w *edacReads) wait(t *testing.T, n int) {
	t.Helper()
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(60 * time.Second)
	for w.seen < n {
		k, err := unix.Read(w.fd, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			if time.Now().After(deadline) {
				t.Fatalf("the daemon read mc0/ce_count %d times in 60 s, want %d", w.seen, n)
			}
			// Draining often also keeps inotify from merging two polls'
			// reads into one event.
			time.Sleep(10 * time.Millisecond)
			continue
		case err != nil:
			require.NoError(t, err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= k; {
			mask := byteorder.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(byteorder.NativeEndian.Uint32(buf[off+12:]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+nameLen]), "\x00")
			require.Zero(t, mask&unix.IN_Q_OVERFLOW, "inotify queue overflowed")
			if mask&unix.IN_ACCESS != 0 && name == "ce_count" {
				w.seen++
			}
			off += unix.SizeofInotifyEvent + nameLen
		}
	}
}
