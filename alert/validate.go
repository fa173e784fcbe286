package alert

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/selfprotect/selfprotect/strictyaml"
)

var notifierName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// validate fills per-notifier defaults and checks every value, reporting
// all problems at once.
func (c *Config) validate() error {
	v := &validator{o: c.origin}
	o := &c.Outbox
	v.check(o.MaxPending >= 1, "alerts.outbox.max_pending", "must be >= 1, got %d", o.MaxPending)
	v.check(o.InitialBackoff > 0, "alerts.outbox.initial_backoff", "must be > 0, got %s", o.InitialBackoff)
	v.check(o.MaxBackoff >= o.InitialBackoff, "alerts.outbox.max_backoff", "must be >= initial_backoff (%s), got %s", o.InitialBackoff, o.MaxBackoff)
	v.check(o.KeepSent >= 0, "alerts.outbox.keep_sent", "must be >= 0, got %s", o.KeepSent)

	names := map[string]int{}
	for i := range c.Notifiers {
		n := &c.Notifiers[i]
		p := fmt.Sprintf("alerts.notifiers[%d]", i)
		switch {
		case n.Name == "":
			v.fail(p+".name", "required")
		case !notifierName.MatchString(n.Name):
			v.fail(p+".name", "want lower-case letters, digits, '-' and '_', got %q", n.Name)
		default:
			if j, dup := names[n.Name]; dup {
				v.fail(p+".name", "%q is already the name of notifiers[%d]", n.Name, j)
			}
			names[n.Name] = i
		}
		if n.MinSeverity != "" && n.MinSeverity.Rank() < 0 {
			v.fail(p+".min_severity", "want one of %s, got %q", list(severities), n.MinSeverity)
		}
		for j, t := range n.Transitions {
			if !t.Valid() {
				v.fail(fmt.Sprintf("%s.transitions[%d]", p, j), "want one of %s, got %q", list(Transitions), t)
			}
		}
		if n.Concurrency == 0 {
			n.Concurrency = DefaultConcurrency
			if n.Type == TypeExec {
				n.Concurrency = DefaultExecConcurrency
			}
		}
		v.check(n.Concurrency >= 1, p+".concurrency", "must be >= 1, got %d", n.Concurrency)
		if n.Timeout == 0 {
			n.Timeout = DefaultTimeout
		}
		v.check(n.Timeout > 0, p+".timeout", "must be > 0, got %s", n.Timeout)
		v.notifier(n, p)
	}
	return v.err()
}

func (v *validator) notifier(n *NotifierConfig, p string) {
	sections := map[string]bool{
		TypeEmail: n.Email != nil, TypeSNMP: n.SNMP != nil, TypeAlertmanager: n.Alertmanager != nil,
		TypeWebhook: n.Webhook != nil, TypeExec: n.Exec != nil,
	}
	if !slices.Contains(Types, n.Type) {
		v.fail(p+".type", "want one of %s, got %q", strings.Join(Types, ", "), n.Type)
		return
	}
	for _, t := range Types {
		if t != n.Type && sections[t] {
			v.fail(p+"."+t, "settings for type %s in a notifier of type %s", t, n.Type)
		}
	}
	if !sections[n.Type] {
		v.fail(p+"."+n.Type, "required for type %s", n.Type)
		return
	}
	p += "." + n.Type
	switch n.Type {
	case TypeEmail:
		v.email(n.Email, p)
	case TypeSNMP:
		v.snmp(n.SNMP, p)
	case TypeAlertmanager:
		a := n.Alertmanager
		if raw, field, ok := v.urlSource(string(a.URL), &a.URLFile, p); ok {
			a.URL = BaseURL(raw)
			v.url(a.URL.Endpoint(), field)
		}
		v.fromConfigDir(&a.CAFile)
		if a.RepostInterval == 0 {
			a.RepostInterval = DefaultRepost
		}
		v.check(a.RepostInterval > 0, p+".repost_interval", "must be > 0, got %s", a.RepostInterval)
	case TypeWebhook:
		w := n.Webhook
		if raw, field, ok := v.urlSource(string(w.URL), &w.URLFile, p); ok {
			w.URL = HookURL(raw)
			v.url(w.URL.Endpoint(), field)
		}
		v.fromConfigDir(&w.CAFile)
	case TypeExec:
		if len(n.Exec.Command) == 0 || n.Exec.Command[0] == "" {
			v.fail(p+".command", "required: the program and its arguments, as a list")
		}
	}
}

func (v *validator) email(e *EmailConfig, p string) {
	v.check(e.Host != "", p+".host", "required")
	v.fromConfigDir(&e.CAFile)
	if e.TLS == "" {
		e.TLS = TLSStartTLS
	}
	switch e.TLS {
	case TLSStartTLS, TLSNone:
		if e.Port == 0 {
			e.Port = 25
		}
	case TLSImplicit:
		if e.Port == 0 {
			e.Port = 465
		}
	default:
		v.fail(p+".tls", "want %s, %s or %s, got %q", TLSStartTLS, TLSImplicit, TLSNone, e.TLS)
	}
	v.check(e.Port >= 0 && e.Port < 65536, p+".port", "want 1-65535, got %d", e.Port)
	v.check(e.TLS != TLSNone || e.Password == "", p+".password", "refusing to send a password without TLS")
	v.check((e.Username == "") == (e.Password == ""), p+".username", "username and password go together")
	if _, err := mail.ParseAddress(e.From); err != nil {
		v.fail(p+".from", "want an address, got %q: %v", e.From, err)
	}
	if len(e.To) == 0 {
		v.fail(p+".to", "required: at least one recipient")
	}
	for i, to := range e.To {
		if _, err := mail.ParseAddress(to); err != nil {
			v.fail(fmt.Sprintf("%s.to[%d]", p, i), "want an address, got %q: %v", to, err)
		}
	}
}

var oidPattern = regexp.MustCompile(`^[0-9]+(\.[0-9]+)+$`)

func (v *validator) snmp(s *SNMPConfig, p string) {
	if s.Target == "" {
		v.fail(p+".target", "required: host:port of the manager")
	} else if _, port, err := net.SplitHostPort(s.Target); err != nil {
		s.Target = net.JoinHostPort(s.Target, "162")
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.fail(p+".target", "want host:port with a port 1-65535, got %q", s.Target)
	}
	if s.Version == "" {
		s.Version = SNMPv2c
	}
	if s.Mode == "" {
		s.Mode = SNMPTrap
	}
	if s.RootOID == "" {
		s.RootOID = DefaultRootOID
	}
	s.RootOID = strings.TrimPrefix(s.RootOID, ".")
	v.check(oidPattern.MatchString(s.RootOID), p+".root_oid", "want a numeric OID like %s, got %q", DefaultRootOID, s.RootOID)
	v.check(s.Mode == SNMPTrap || s.Mode == SNMPInform, p+".mode", "want %s or %s, got %q", SNMPTrap, SNMPInform, s.Mode)
	if s.Retries == 0 {
		s.Retries = DefaultSNMPRetries
	}
	v.check(s.Retries >= 0, p+".retries", "must be >= 0, got %d", s.Retries)
	switch s.Version {
	case SNMPv2c:
		v.check(s.Community != "", p+".community", "required for v2c")
		v.check(s.User == "", p+".user", "only for v3")
	case SNMPv3:
		v.check(s.Community == "", p+".community", "only for v2c; v3 uses user, auth_key and priv_key")
		v.check(s.User != "", p+".user", "required for v3")
		if s.AuthProtocol == "" {
			s.AuthProtocol = "SHA"
		}
		if s.PrivProtocol == "" {
			s.PrivProtocol = "AES"
		}
		v.check(slices.Contains(SNMPAuthProtocols, s.AuthProtocol), p+".auth_protocol", "want one of %s, got %q", strings.Join(SNMPAuthProtocols, ", "), s.AuthProtocol)
		v.check(slices.Contains(SNMPPrivProtocols, s.PrivProtocol), p+".priv_protocol", "want one of %s, got %q", strings.Join(SNMPPrivProtocols, ", "), s.PrivProtocol)
		// RFC 3414: a passphrase shorter than 8 characters is refused by
		// every agent, so say so here instead of as a silent rejection.
		v.check(len(s.AuthKey) >= 8, p+".auth_key", "required for v3 authPriv, at least 8 characters")
		v.check(len(s.PrivKey) >= 8, p+".priv_key", "required for v3 authPriv, at least 8 characters")
		if s.EngineID != "" {
			b, err := hex.DecodeString(strings.TrimPrefix(s.EngineID, "0x"))
			v.check(err == nil && len(b) >= 5 && len(b) <= 32, p+".engine_id", "want 5 to 32 bytes in hex, got %q", s.EngineID)
		}
	default:
		v.fail(p+".version", "want %s or %s, got %q", SNMPv2c, SNMPv3, s.Version)
	}
}

// SNMPAuthProtocols and SNMPPrivProtocols are the v3 protocols offered
// (authPriv only: alerts name hardware and hosts).
var (
	SNMPAuthProtocols = []string{"SHA", "SHA256", "SHA512"}
	SNMPPrivProtocols = []string{"AES", "AES256"}
)

// fromConfigDir makes a relative file name (url_file, ca_file) relative to
// the configuration file's directory, as Alertmanager does, so check-config
// in a shell and the daemon in / (systemd's working directory) read the
// same file. The name is rewritten in place for the echo to say which file
// is read; an empty name stays empty (no file).
func (v *validator) fromConfigDir(name *string) {
	if *name != "" && !filepath.IsAbs(*name) {
		*name = filepath.Join(filepath.Dir(v.o.File), *name)
	}
}

// urlSource is the URL of the notifier settings at p, read from url_file
// when that is set (found as fromConfigDir says), and the key a problem
// with it is reported at; ok is false when there is no URL to check (a
// problem was reported).
func (v *validator) urlSource(inline string, file *string, p string) (raw, field string, ok bool) {
	switch {
	case *file == "":
		return inline, p + ".url", true
	case inline != "":
		v.fail(p+".url_file", "url is set too: give the URL in url or in url_file, not both")
		return "", "", false
	}
	v.fromConfigDir(file)
	raw, err := readURLFile(*file)
	if err != nil {
		v.fail(p+".url_file", "%v", err)
		return "", "", false
	}
	return raw, p + ".url_file", true
}

// maxURLFile bounds what url_file reads, so a path naming a device or a
// log does not hang or bloat the load.
const maxURLFile = 64 << 10

// readURLFile reads the URL a url_file holds. Editors and `echo` end files
// with a newline, so surrounding white space is not part of it.
func readURLFile(path string) (string, error) {
	data, err := strictyaml.ReadConfigFile(path, maxURLFile)
	if err != nil {
		return "", fmt.Errorf("reading the URL: %w", err)
	}
	raw := strings.TrimSpace(string(data))
	if raw == "" {
		return "", fmt.Errorf("%s is empty: want the URL in it", path)
	}
	return raw, nil
}

// url checks the URL a notifier posts to. No message quotes it, not even
// shown: a hook's URL is its credential, and what is wrong with it (no
// scheme, no host) is what the shown form would hide or mangle.
func (v *validator) url(e Endpoint, field string) {
	raw := e.Reveal()
	if raw == "" {
		v.fail(field, "required: the URL, or url_file naming a file that holds it")
		return
	}
	const want = "want an http:// or https:// URL, got "
	if !strings.Contains(raw, "://") {
		v.fail(field, want+`one without "://"`)
		return
	}
	u, err := url.Parse(raw)
	var uerr *url.Error
	switch {
	case errors.As(err, &uerr):
		// The cause names the offending character or port, not the URL.
		v.fail(field, want+"one that does not parse: %v", uerr.Err)
	case err != nil:
		v.fail(field, want+"one that does not parse")
	case u.Scheme != "http" && u.Scheme != "https":
		v.fail(field, want+"scheme %q", u.Scheme)
	case u.Host == "":
		v.fail(field, want+"one without a host")
	case u.User != nil:
		v.fail(field, "credentials in the URL would be logged; use bearer_token")
	}
}

type validator struct {
	o    strictyaml.Origin
	errs []error
}

func (v *validator) check(ok bool, field, format string, args ...any) {
	if !ok {
		v.fail(field, format, args...)
	}
}

func (v *validator) fail(field, format string, args ...any) {
	v.errs = append(v.errs, v.o.Errorf(field, format, args...))
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func list[T ~string](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}

// YAML renders the effective section, secrets masked, for check-config.
func (c *Config) YAML() ([]byte, error) {
	out, err := yaml.Marshal(map[string]*Config{Section: c})
	if err != nil {
		return nil, fmt.Errorf("rendering alerts configuration: %w", err)
	}
	return out, nil
}

// String is the effective section as YAML; secrets show as "<secret>".
func (c *Config) String() string {
	b, err := c.YAML()
	if err != nil {
		return err.Error()
	}
	return string(b)
}
