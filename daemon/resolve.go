package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
)

// resolveCase is FMA's repaired / acquitted / replaced: the operator says
// the suspect is fixed (or was never faulty). CPUs we offlined come back
// online, the engines for the case's resources are re-armed, and the store
// stops listing its resources for re-isolation at boot. A poisoned page
// cannot be returned to service on a production kernel: it stays offline
// until the next reboot and is then no longer re-isolated.
func (d *Daemon) resolveCase(id string, state fault.CaseState, verb string) (string, error) {
	if id == "" {
		return "", fmt.Errorf("%s needs a case ID", verb)
	}
	c, err := d.store.Case(id)
	if err != nil {
		return "", err
	}
	if c.State == fault.CaseRepaired || c.State == fault.CaseAcquit || c.State == fault.CaseClosed {
		return "", fmt.Errorf("case %s is already %s", c.ID, c.State)
	}
	acts, err := d.store.Actions(c.ID)
	if err != nil {
		return "", err
	}
	var notes []string
	resources := map[fault.Resource]bool{c.Suspect: true}
	for _, a := range acts {
		resources[a.Resource] = true
		if a.Outcome != fault.OutcomeIsolated {
			continue
		}
		switch a.Resource.Kind() {
		case fault.KindCPU:
			n, _ := a.Resource.CPUNumber()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := d.cpus.Restore(ctx, n)
			cancel()
			if err != nil {
				return "", fmt.Errorf("bringing CPU %d back online: %w (case left %s)", n, err, c.State)
			}
			notes = append(notes, fmt.Sprintf("CPU %d online again", n))
		case fault.KindPage:
			notes = append(notes, fmt.Sprintf("%s stays poisoned until reboot and will not be re-isolated", a.Resource))
		}
	}
	note := fmt.Sprintf("%s by operator", verb)
	if len(notes) > 0 {
		note += ": " + strings.Join(notes, "; ")
	}
	if err := d.alerts.updateCaseState(c.ID, state, d.now(), note, d.alerts.resolved(c, acts, verb, note)); err != nil {
		return "", err
	}
	d.cases.move(c.ID, state)
	d.policyMu.Lock()
	for r := range resources {
		d.engine.Reset(r)
		if d.collectRearmed {
			d.rearmed = append(d.rearmed, r)
		}
	}
	d.policyMu.Unlock()
	d.mu.Lock()
	for r := range resources {
		d.isolated.remove(r)
	}
	d.mu.Unlock()
	d.log.WithField("case", c.ID).Warn(note)
	d.askBudget()
	return fmt.Sprintf("case %s %s; %s", c.ID, state, note), nil
}
