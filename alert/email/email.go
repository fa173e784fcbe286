// Package email sends each alert as a plain-text mail through an SMTP
// relay: STARTTLS (required, never opportunistic) or implicit TLS with
// certificate verification, optional AUTH, several recipients. The
// Message-ID is derived from the alert ID, so a copy re-sent after a crash
// is recognisably the same mail, and X-Selfprotect-* headers carry case,
// transition and severity for mail filters.
package email

import (
	"context"
	"fmt"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"

	"github.com/selfprotect/selfprotect/alert"
)

// Headers set on every mail.
const (
	HeaderCase       = "X-Selfprotect-Case"
	HeaderTransition = "X-Selfprotect-Transition"
	HeaderSeverity   = "X-Selfprotect-Severity"
	HeaderAlertID    = "X-Selfprotect-Alert-Id"
	// HeaderResolves, on the end of a health problem, is the ID of the
	// problem's alert; the mail also replies to the problem's mail so a
	// mail client threads the two.
	HeaderResolves = "X-Selfprotect-Resolves"
)

// Notifier mails one list of recipients.
type Notifier struct {
	cfg  alert.EmailConfig
	opts []mail.Option
}

// New builds the notifier; it checks the CA file now, not at the first
// alert.
func New(cfg alert.EmailConfig) (*Notifier, error) {
	server := cfg.ServerName
	if server == "" {
		server = cfg.Host
	}
	tlsCfg, err := alert.TLSConfig(cfg.CAFile, server)
	if err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	opts := []mail.Option{mail.WithPort(cfg.Port), mail.WithTLSConfig(tlsCfg)}
	switch cfg.TLS {
	case alert.TLSImplicit:
		opts = append(opts, mail.WithSSL())
	case alert.TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		// Mandatory: a relay that does not offer STARTTLS (or a man in
		// the middle stripping it) gets no mail.
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(cfg.Username), mail.WithPassword(cfg.Password.Reveal()))
	}
	return &Notifier{cfg: cfg, opts: opts}, nil
}

// MessageID is the alert's stable Message-ID (without angle brackets).
func MessageID(a alert.Alert) string {
	host := a.Host
	if host == "" {
		host = "localhost"
	}
	return a.ID + "@selfprotect." + host
}

// Message builds the mail for a.
func (n *Notifier) Message(a alert.Alert) (*mail.Msg, error) {
	m := mail.NewMsg()
	if err := m.From(n.cfg.From); err != nil {
		return nil, fmt.Errorf("from address: %w", err)
	}
	if err := m.To(n.cfg.To...); err != nil {
		return nil, fmt.Errorf("recipient address: %w", err)
	}
	m.Subject("selfprotect " + a.Title())
	m.SetMessageIDWithValue(MessageID(a))
	if a.Time.IsZero() {
		m.SetDate()
	} else {
		// The alert's own time, so a re-sent copy is the same mail.
		m.SetDateWithValue(a.Time)
	}
	m.SetUserAgent("selfprotect")
	m.SetBulk()
	m.SetGenHeader(HeaderCase, a.Case)
	m.SetGenHeader(HeaderTransition, string(a.Transition))
	m.SetGenHeader(HeaderSeverity, string(a.Severity))
	m.SetGenHeader(HeaderAlertID, a.ID)
	if p, ok := a.Transition.Clears(); ok {
		problem := a
		problem.ID = alert.StableID(a.Host, a.Case, p)
		m.SetGenHeader(HeaderResolves, problem.ID)
		m.SetGenHeader(mail.HeaderInReplyTo, "<"+MessageID(problem)+">")
		m.SetGenHeader(mail.HeaderReferences, "<"+MessageID(problem)+">")
	}
	m.SetBodyString(mail.TypeTextPlain, Body(a))
	return m, nil
}

// Body is the plain-text body: the alert's fields, then the evidence.
func Body(a alert.Alert) string {
	var b strings.Builder
	fmt.Fprintf(&b, "selfprotect on %s: %s\n\n", a.Host, a.Transition)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-12s %s\n", k+":", v)
		}
	}
	row("Case", a.Case)
	row("Transition", string(a.Transition))
	row("Severity", string(a.Severity))
	row("Suspect", a.Suspect)
	row("FRU", a.FRU)
	row("Summary", a.Summary)
	row("Host", a.Host)
	row("Time", a.Time.UTC().Format(time.RFC3339))
	row("Undo", a.Undo)
	row("Alert ID", a.ID)
	fmt.Fprintf(&b, "\nEvidence (%d errors", a.EvidenceCount)
	if len(a.Evidence) < a.EvidenceCount && len(a.Evidence) > 0 {
		fmt.Fprintf(&b, ", the first %d shown", len(a.Evidence))
	}
	b.WriteString("):\n")
	for _, e := range a.Evidence {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	if len(a.Evidence) == 0 {
		b.WriteString("  (none recorded)\n")
	}
	return b.String()
}

// Notify sends the mail. Every send failure is retried: a relay that is
// down, a TLS or AUTH problem an operator will fix, a temporary 4xx.
func (n *Notifier) Notify(ctx context.Context, a alert.Alert) (bool, error) {
	m, err := n.Message(a)
	if err != nil {
		return false, fmt.Errorf("building mail: %w", err)
	}
	c, err := mail.NewClient(n.cfg.Host, n.opts...)
	if err != nil {
		return false, fmt.Errorf("smtp client for %s: %w", n.cfg.Host, err)
	}
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		return true, fmt.Errorf("mailing %s via %s:%d: %w", strings.Join(n.cfg.To, ", "), n.cfg.Host, n.cfg.Port, err)
	}
	return false, nil
}
