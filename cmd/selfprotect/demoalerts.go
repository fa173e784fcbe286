package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/daemon"
)

// demoAlerts is the demo's alerts: section: an exec hook that appends one
// line per alert to alerts.log, which the demo prints after each step.
func demoAlerts(dir string) string {
	log := filepath.Join(dir, "alerts.log")
	script := `printf '%s %s case=%s %s fru=%s undo=%s\n' "$SELFPROTECT_SEVERITY" "$SELFPROTECT_TRANSITION" ` +
		`"$SELFPROTECT_CASE" "$SELFPROTECT_SUSPECT" "$SELFPROTECT_FRU" "$SELFPROTECT_UNDO" >> ` + log
	return fmt.Sprintf(`alerts:
  host: demo-host
  notifiers:
    - name: print-hook
      type: exec
      concurrency: 1 # in order, for the narration
      exec:
        command: [/bin/sh, -c, %q]
`, script)
}

// showAlerts waits (briefly) for the outbox to drain, then prints the
// alerts the hook received since the last call.
func (d *demo) showAlerts() {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := daemon.Call(d.socket, daemon.Request{Command: "status"}, 2*time.Second)
		if err != nil {
			break
		}
		busy := false
		for _, n := range resp.Status.Alerts {
			busy = busy || n.Pending > 0 || n.InFlight > 0
		}
		if !busy {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(d.dir, "alerts.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(b) == 0 {
		lines = nil
	}
	for _, l := range lines[min(d.alertsSeen, len(lines)):] {
		d.say("   alert → print-hook: %s", strings.TrimSuffix(strings.TrimSuffix(l, " undo="), " fru="))
	}
	d.alertsSeen = len(lines)
}
