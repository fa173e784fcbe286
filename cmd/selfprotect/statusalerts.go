package main

import (
	"fmt"
	"io"
	"time"

	"github.com/selfprotect/selfprotect/alert"
)

// printAlerts is the notifier part of `status`: each notifier's queue and
// last outcome. Errors are shown as the notifiers worded them, which never
// carry configured secrets (alert/secret.go).
func printAlerts(w io.Writer, ns []alert.NotifierStatus) {
	if len(ns) == 0 {
		return
	}
	fmt.Fprintln(w, "alerts:")
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format(time.RFC3339)
	}
	for _, n := range ns {
		fmt.Fprintf(w, "  %-16s %-13s %d queued, %d in flight, %d sent, %d failed attempts, %d given up, %d dropped; last success %s",
			n.Name, n.Type, n.Pending, n.InFlight, n.Sent, n.Failed, n.Dead, n.Dropped, when(n.LastSuccess))
		if n.LastError != "" {
			fmt.Fprintf(w, "; last error %s: %s", when(n.LastErrorAt), n.LastError)
		}
		fmt.Fprintln(w)
	}
}
