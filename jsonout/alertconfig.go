package jsonout

import (
	"slices"
	"time"

	"github.com/selfprotect/selfprotect/alert"
)

// AlertConfig is `alert config --json`: the effective alerts: section,
// defaults filled in, every key the YAML output shows. Durations are
// seconds (the YAML's "10m0s" is 600); secrets print as the YAML prints
// them: "<secret>" when set, "" when not.
type AlertConfig struct {
	File      string          `json:"file" desc:"the configuration file read"`
	Host      string          `json:"host" desc:"the host every alert names; empty for the kernel's host name"`
	Outbox    AlertOutbox     `json:"outbox"`
	Notifiers []AlertNotifier `json:"notifiers" desc:"in the order configured"`
}

// AlertOutbox bounds the durable queue and paces retries.
type AlertOutbox struct {
	MaxPending            int     `json:"max_pending" desc:"undelivered alerts kept per notifier; past it new ones are dropped"`
	InitialBackoffSeconds float64 `json:"initial_backoff_seconds" desc:"wait before the first retry"`
	MaxBackoffSeconds     float64 `json:"max_backoff_seconds" desc:"longest wait between retries"`
	KeepSentSeconds       float64 `json:"keep_sent_seconds" desc:"how long a delivered alert is kept, so a repeat is not sent twice"`
}

// AlertNotifier is one notifier: its route and the settings of its type,
// in the object named after the type (the others are left out).
type AlertNotifier struct {
	Name           string             `json:"name"`
	Type           string             `json:"type" desc:"email, snmp, alertmanager, webhook, exec"`
	MinSeverity    alert.Severity     `json:"min_severity" desc:"alerts below it are not sent; empty passes every severity"`
	Transitions    []alert.Transition `json:"transitions" desc:"the only transitions sent; empty passes every one"`
	Concurrency    int                `json:"concurrency" desc:"alerts sent at once"`
	TimeoutSeconds float64            `json:"timeout_seconds" desc:"limit of one send"`

	Email        *AlertEmail        `json:"email,omitempty" desc:"present for type email"`
	SNMP         *AlertSNMP         `json:"snmp,omitempty" desc:"present for type snmp"`
	Alertmanager *AlertAlertmanager `json:"alertmanager,omitempty" desc:"present for type alertmanager"`
	Webhook      *AlertWebhook      `json:"webhook,omitempty" desc:"present for type webhook"`
	Exec         *AlertExec         `json:"exec,omitempty" desc:"present for type exec"`
}

// AlertEmail sends mail through an SMTP relay.
type AlertEmail struct {
	Host       string   `json:"host"`
	Port       int      `json:"port"`
	TLS        string   `json:"tls" desc:"starttls, tls or none"`
	CAFile     string   `json:"ca_file" desc:"PEM certificates trusted instead of the system's; empty for the system's"`
	ServerName string   `json:"server_name" desc:"name the certificate is checked against; empty for host"`
	Username   string   `json:"username"`
	Password   string   `json:"password" desc:"\"<secret>\" when set, empty when not; the value never prints"`
	From       string   `json:"from"`
	To         []string `json:"to"`
}

// AlertSNMP sends traps or informs to one manager.
type AlertSNMP struct {
	Target       string `json:"target" desc:"host:port of the manager"`
	Version      string `json:"version" desc:"v2c or v3"`
	Mode         string `json:"mode" desc:"trap or inform"`
	Community    string `json:"community" desc:"\"<secret>\" when set, empty when not; the value never prints"`
	Retries      int    `json:"retries" desc:"re-sends of an unacknowledged inform within one attempt"`
	RootOID      string `json:"root_oid"`
	User         string `json:"user"`
	AuthProtocol string `json:"auth_protocol"`
	AuthKey      string `json:"auth_key" desc:"\"<secret>\" when set, empty when not; the value never prints"`
	PrivProtocol string `json:"priv_protocol"`
	PrivKey      string `json:"priv_key" desc:"\"<secret>\" when set, empty when not; the value never prints"`
	EngineID     string `json:"engine_id" desc:"hex; empty to derive it from the host"`
}

// AlertAlertmanager posts to Alertmanager's v2 API.
type AlertAlertmanager struct {
	URL                   string  `json:"url" desc:"the base URL with its path (a route prefix), without user info, a query shown as \"?...\"; empty when url_file is set"`
	URLFile               string  `json:"url_file" desc:"file the URL is read from; empty when url is set"`
	BearerToken           string  `json:"bearer_token" desc:"\"<secret>\" when set, empty when not; the value never prints"`
	CAFile                string  `json:"ca_file"`
	RepostIntervalSeconds float64 `json:"repost_interval_seconds" desc:"how often open cases are posted again"`
}

// AlertWebhook posts each alert as JSON.
type AlertWebhook struct {
	URL         string `json:"url" desc:"scheme, host and port only, a path shown as \"/...\" and a query as \"?...\": a hook's URL usually holds its token; empty when url_file is set"`
	URLFile     string `json:"url_file" desc:"file the URL is read from; empty when url is set"`
	BearerToken string `json:"bearer_token" desc:"\"<secret>\" when set, empty when not; the value never prints"`
	CAFile      string `json:"ca_file"`
}

// AlertExec runs a program per alert.
type AlertExec struct {
	Command []string `json:"command" desc:"the argv, run without a shell"`
}

// secret is a secret as the YAML output shows it: alert.Secret masks
// itself, and only its masked form reaches the output type.
func secret(s alert.Secret) string { return s.String() }

func seconds(d time.Duration) float64 { return d.Seconds() }

// NewAlertConfig converts a loaded (validated, defaults filled) alerts:
// section read from file.
func NewAlertConfig(file string, c *alert.Config) AlertConfig {
	o := c.Outbox
	out := AlertConfig{File: file, Host: c.Host, Notifiers: make([]AlertNotifier, 0, len(c.Notifiers)),
		Outbox: AlertOutbox{MaxPending: o.MaxPending, InitialBackoffSeconds: seconds(o.InitialBackoff),
			MaxBackoffSeconds: seconds(o.MaxBackoff), KeepSentSeconds: seconds(o.KeepSent)}}
	for _, n := range c.Notifiers {
		j := AlertNotifier{Name: n.Name, Type: n.Type, MinSeverity: n.MinSeverity,
			Transitions: append([]alert.Transition{}, n.Transitions...), Concurrency: n.Concurrency,
			TimeoutSeconds: seconds(n.Timeout)}
		if e := n.Email; e != nil {
			j.Email = &AlertEmail{Host: e.Host, Port: e.Port, TLS: e.TLS, CAFile: e.CAFile, ServerName: e.ServerName,
				Username: e.Username, Password: secret(e.Password), From: e.From, To: nonNil(slices.Clone(e.To))}
		}
		if s := n.SNMP; s != nil {
			j.SNMP = &AlertSNMP{Target: s.Target, Version: s.Version, Mode: s.Mode, Community: secret(s.Community),
				Retries: s.Retries, RootOID: s.RootOID, User: s.User, AuthProtocol: s.AuthProtocol,
				AuthKey: secret(s.AuthKey), PrivProtocol: s.PrivProtocol, PrivKey: secret(s.PrivKey), EngineID: s.EngineID}
		}
		if a := n.Alertmanager; a != nil {
			j.Alertmanager = &AlertAlertmanager{URL: a.ShownURL(), URLFile: a.URLFile, BearerToken: secret(a.BearerToken), CAFile: a.CAFile,
				RepostIntervalSeconds: seconds(a.RepostInterval)}
		}
		if w := n.Webhook; w != nil {
			j.Webhook = &AlertWebhook{URL: w.ShownURL(), URLFile: w.URLFile, BearerToken: secret(w.BearerToken), CAFile: w.CAFile}
		}
		if x := n.Exec; x != nil {
			j.Exec = &AlertExec{Command: nonNil(slices.Clone(x.Command))}
		}
		out.Notifiers = append(out.Notifiers, j)
	}
	return out
}
