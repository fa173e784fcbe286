// Package notifiers builds the configured notifiers: the one place that
// knows every integration, so alert/ itself imports none of them.
package notifiers

import (
	"fmt"

	"github.com/selfprotect/selfprotect/alert"
	"github.com/selfprotect/selfprotect/alert/alertmanager"
	"github.com/selfprotect/selfprotect/alert/email"
	"github.com/selfprotect/selfprotect/alert/exec"
	"github.com/selfprotect/selfprotect/alert/snmp"
	"github.com/selfprotect/selfprotect/alert/webhook"
)

// Build makes one notifier per configured entry, in config order. It
// fails on the first that cannot be built (an unreadable CA file, a hook
// that does not exist), naming it and where it was configured.
func Build(cfg *alert.Config) ([]alert.NamedNotifier, error) {
	host := cfg.HostName()
	out := make([]alert.NamedNotifier, 0, len(cfg.Notifiers))
	for i, nc := range cfg.Notifiers {
		n, err := build(nc, host)
		if err != nil {
			where := fmt.Sprintf("alerts.notifiers[%d]", i)
			if line := cfg.Line(where); line > 0 {
				where = fmt.Sprintf("%s:%d: %s", cfg.File(), line, where)
			}
			return nil, fmt.Errorf("%s (%s): %w", where, nc.Name, err)
		}
		out = append(out, alert.NamedNotifier{
			Name: nc.Name, Type: nc.Type, Route: nc.Route(), Notifier: n,
			Concurrency: nc.Concurrency, Timeout: nc.Timeout,
		})
	}
	return out, nil
}

func build(nc alert.NotifierConfig, host string) (alert.Notifier, error) {
	switch nc.Type {
	case alert.TypeEmail:
		return email.New(*nc.Email)
	case alert.TypeSNMP:
		return snmp.New(*nc.SNMP, host)
	case alert.TypeAlertmanager:
		return alertmanager.New(*nc.Alertmanager, nil)
	case alert.TypeWebhook:
		return webhook.New(*nc.Webhook)
	case alert.TypeExec:
		return exec.New(*nc.Exec)
	}
	return nil, fmt.Errorf("unknown notifier type %q", nc.Type)
}
