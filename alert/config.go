package alert

import (
	"os"
	"time"

	"github.com/selfprotect/selfprotect/strictyaml"
)

// Config is the `alerts:` section of /etc/selfprotect/selfprotect.yaml.
// Parse fills the defaults below for keys left out.
type Config struct {
	// Host names this machine in every alert; the kernel's host name when
	// empty.
	Host      string           `yaml:"host" json:"host"`
	Outbox    OutboxConfig     `yaml:"outbox" json:"outbox"`
	Notifiers []NotifierConfig `yaml:"notifiers" json:"notifiers"`

	origin strictyaml.Origin
}

// OutboxConfig bounds the durable queue and paces retries.
type OutboxConfig struct {
	// MaxPending caps undelivered rows per notifier; past it new alerts are
	// dropped, counted, and one outbox-overflow alert is queued.
	MaxPending     int           `yaml:"max_pending" json:"max_pending"`
	InitialBackoff time.Duration `yaml:"initial_backoff" json:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff" json:"max_backoff"`
	// KeepSent is how long delivered rows stay, so a repeated transition
	// within it is recognised and not sent twice.
	KeepSent time.Duration `yaml:"keep_sent" json:"keep_sent"`
}

// NotifierConfig is one entry of `notifiers:`: a name, a type, a route and
// the settings section named after the type.
type NotifierConfig struct {
	Name        string        `yaml:"name" json:"name"`
	Type        string        `yaml:"type" json:"type"`
	MinSeverity Severity      `yaml:"min_severity" json:"min_severity,omitempty"`
	Transitions []Transition  `yaml:"transitions" json:"transitions,omitempty"`
	Concurrency int           `yaml:"concurrency" json:"concurrency"`
	Timeout     time.Duration `yaml:"timeout" json:"timeout"`

	Email        *EmailConfig        `yaml:"email,omitempty" json:"email,omitempty"`
	SNMP         *SNMPConfig         `yaml:"snmp,omitempty" json:"snmp,omitempty"`
	Alertmanager *AlertmanagerConfig `yaml:"alertmanager,omitempty" json:"alertmanager,omitempty"`
	Webhook      *WebhookConfig      `yaml:"webhook,omitempty" json:"webhook,omitempty"`
	Exec         *ExecConfig         `yaml:"exec,omitempty" json:"exec,omitempty"`
}

// Route is the routing part of the entry.
func (n NotifierConfig) Route() Route {
	return Route{MinSeverity: n.MinSeverity, Transitions: n.Transitions}
}

// Notifier types, the values of `type:`.
const (
	TypeEmail        = "email"
	TypeSNMP         = "snmp"
	TypeAlertmanager = "alertmanager"
	TypeWebhook      = "webhook"
	TypeExec         = "exec"
)

// Types lists the notifier types in the order the docs show them.
var Types = []string{TypeEmail, TypeSNMP, TypeAlertmanager, TypeWebhook, TypeExec}

// TLS modes of an SMTP connection.
const (
	TLSStartTLS = "starttls" // plain connect, then STARTTLS, which must succeed
	TLSImplicit = "tls"      // TLS from the first byte (port 465)
	TLSNone     = "none"     // cleartext, for a relay on the same host only
)

// EmailConfig sends plain-text mail through an SMTP relay.
type EmailConfig struct {
	Host string `yaml:"host" json:"host"`
	Port int    `yaml:"port" json:"port"`
	TLS  string `yaml:"tls" json:"tls"`
	// CAFile holds PEM certificates to trust instead of the system's; a
	// relative name is found next to the configuration file, like
	// url_file.
	CAFile string `yaml:"ca_file" json:"ca_file,omitempty"`
	// ServerName is checked against the certificate; Host when empty.
	ServerName string   `yaml:"server_name" json:"server_name,omitempty"`
	Username   string   `yaml:"username" json:"username,omitempty"`
	Password   Secret   `yaml:"password" json:"password,omitempty"`
	From       string   `yaml:"from" json:"from"`
	To         []string `yaml:"to" json:"to"`
}

// SNMPConfig sends traps or informs to one manager.
type SNMPConfig struct {
	Target    string `yaml:"target" json:"target"` // host:port, port 162 when left out
	Version   string `yaml:"version" json:"version"`
	Mode      string `yaml:"mode" json:"mode"`
	Community Secret `yaml:"community" json:"community,omitempty"`
	// Retries is how often an unacknowledged inform is re-sent within one
	// attempt; the outbox retries beyond that.
	Retries int `yaml:"retries" json:"retries"`
	// RootOID is the MIB's root, 1.3.6.1.4.1.32473 (the documentation
	// enterprise number) unless you load the MIB under your own.
	RootOID      string `yaml:"root_oid" json:"root_oid"`
	User         string `yaml:"user" json:"user,omitempty"`
	AuthProtocol string `yaml:"auth_protocol" json:"auth_protocol,omitempty"`
	AuthKey      Secret `yaml:"auth_key" json:"auth_key,omitempty"`
	PrivProtocol string `yaml:"priv_protocol" json:"priv_protocol,omitempty"`
	PrivKey      Secret `yaml:"priv_key" json:"priv_key,omitempty"`
	// EngineID (hex) is our authoritative engine ID for v3 traps; the
	// manager's createUser names it. Derived from the host when empty.
	EngineID string `yaml:"engine_id" json:"engine_id,omitempty"`
}

// SNMP versions and modes.
const (
	SNMPv2c    = "v2c"
	SNMPv3     = "v3"
	SNMPTrap   = "trap"
	SNMPInform = "inform"
)

// AlertmanagerConfig posts to Alertmanager's v2 API.
type AlertmanagerConfig struct {
	// URL is Alertmanager's base URL, "http://127.0.0.1:9093".
	URL BaseURL `yaml:"url" json:"url"`
	// URLFile names a file holding URL instead, read when the
	// configuration is loaded.
	URLFile     string `yaml:"url_file" json:"url_file,omitempty"`
	BearerToken Secret `yaml:"bearer_token" json:"bearer_token,omitempty"`
	CAFile      string `yaml:"ca_file" json:"ca_file,omitempty"`
	// RepostInterval re-posts open cases so Alertmanager does not resolve
	// them on its own; each post's endsAt is three intervals ahead.
	RepostInterval time.Duration `yaml:"repost_interval" json:"repost_interval"`
}

// WebhookConfig posts the alert as JSON.
type WebhookConfig struct {
	URL HookURL `yaml:"url" json:"url"`
	// URLFile names a file holding URL instead, read when the
	// configuration is loaded: the policy file is printed by check-config
	// and pasted into tickets, and a hook's URL is its credential.
	URLFile     string `yaml:"url_file" json:"url_file,omitempty"`
	BearerToken Secret `yaml:"bearer_token" json:"bearer_token,omitempty"`
	CAFile      string `yaml:"ca_file" json:"ca_file,omitempty"`
}

// ShownURL is the url key as the configuration's echo shows it: the URL's
// shown form (HookURL), or "" when it came from url_file, whose content
// the echo leaves in that file.
func (w WebhookConfig) ShownURL() string { return shownURL(w.URL.Endpoint(), w.URLFile) }

// ShownURL: as WebhookConfig's, the path shown (BaseURL).
func (a AlertmanagerConfig) ShownURL() string { return shownURL(a.URL.Endpoint(), a.URLFile) }

func shownURL(e Endpoint, file string) string {
	if file != "" {
		return ""
	}
	return e.String()
}

// MarshalYAML echoes the URL as ShownURL says (a shown URL shows as
// itself).
func (w WebhookConfig) MarshalYAML() (any, error) {
	type echoed WebhookConfig
	e := echoed(w)
	e.URL = HookURL(w.ShownURL())
	return e, nil
}

// MarshalYAML: as WebhookConfig's.
func (a AlertmanagerConfig) MarshalYAML() (any, error) {
	type echoed AlertmanagerConfig
	e := echoed(a)
	e.URL = BaseURL(a.ShownURL())
	return e, nil
}

// ExecConfig runs a program per alert: the alert in SELFPROTECT_*
// environment variables and as JSON on stdin.
type ExecConfig struct {
	// Command is the argv, run without a shell.
	Command []string `yaml:"command" json:"command"`
}

// Defaults applied by Parse to keys left out.
const (
	DefaultMaxPending      = 10000
	DefaultInitialBackoff  = 10 * time.Second
	DefaultMaxBackoff      = 10 * time.Minute
	DefaultKeepSent        = 7 * 24 * time.Hour
	DefaultTimeout         = 30 * time.Second
	DefaultConcurrency     = 1
	DefaultExecConcurrency = 4
	DefaultRootOID         = "1.3.6.1.4.1.32473"
	DefaultRepost          = time.Minute
	DefaultSNMPRetries     = 3
)

// DefaultConfig is the section as if empty: no notifiers.
func DefaultConfig() *Config {
	return &Config{Outbox: OutboxConfig{
		MaxPending: DefaultMaxPending, InitialBackoff: DefaultInitialBackoff,
		MaxBackoff: DefaultMaxBackoff, KeepSent: DefaultKeepSent,
	}}
}

// Line is where the key at the dotted path was written, 0 if unknown.
func (c *Config) Line(path string) int { return c.origin.Lines[path] }

// File is the file the section came from.
func (c *Config) File() string { return c.origin.File }

// HostName is the host every alert names: Host, or the kernel's host name.
func (c *Config) HostName() string {
	if c.Host != "" {
		return c.Host
	}
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}
