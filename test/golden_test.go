package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
			st := d.settle(time.Second)
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
