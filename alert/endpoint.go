package alert

import (
	"cmp"
	"errors"
	neturl "net/url"
	"slices"
	"strings"
)

// Endpoint is a URL a notifier posts to, with the rule for how much of it
// errors, logs, outbox records and the configuration's echo (`alert
// config`, check-config) may show. Only the request reads all of it
// (Reveal).
//
// Shown, a URL keeps its scheme, host and port. User info is dropped, and
// a query or fragment shows as "?..." or "#...": receivers take tokens
// there too (Google Chat's ?key=..&token=..). Whether the path shows is
// the endpoint's rule, set by the URL type it came from: HookURL hides it,
// BaseURL shows it.
type Endpoint struct {
	raw      string
	showPath bool
}

// HookURL is a webhook's URL. Most receivers carry their credential in the
// path, not in a header (Slack's /services/T../B../TOKEN, Discord's
// /api/webhooks/ID/TOKEN, Teams' connector paths), so nothing after the
// host shows: "https://hooks.slack.com/...". Like Secret, every way of
// printing one (fmt, YAML, JSON) shows only that.
type HookURL string

// BaseURL is the base URL of a known API, Alertmanager's, under which the
// notifier adds the API's own path (/api/v2/alerts). Its path shows: it
// is a route prefix (Alertmanager's --web.route-prefix, a reverse proxy's
// location) that tells two Alertmanagers behind one host apart, and the
// API takes its credential in the Authorization header (bearer_token),
// never in the path. Its query stays hidden like any URL's.
type BaseURL string

// Endpoint is where the webhook posts.
func (u HookURL) Endpoint() Endpoint { return Endpoint{raw: string(u)} }

func (u HookURL) String() string               { return u.Endpoint().String() }
func (u HookURL) GoString() string             { return `alert.HookURL("` + u.String() + `")` }
func (u HookURL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// Endpoint is the API's base.
func (u BaseURL) Endpoint() Endpoint { return Endpoint{raw: string(u), showPath: true} }

func (u BaseURL) String() string               { return u.Endpoint().String() }
func (u BaseURL) GoString() string             { return `alert.BaseURL("` + u.String() + `")` }
func (u BaseURL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// Reveal is the whole URL, for the request.
func (e Endpoint) Reveal() string { return e.raw }

// Join is the endpoint at the path elements under e, with e's query and
// shown by e's rule.
func (e Endpoint) Join(elem ...string) Endpoint {
	u, err := neturl.Parse(e.raw)
	if err != nil {
		// Validation refuses such a URL; the request will say so.
		return Endpoint{raw: strings.TrimSuffix(e.raw, "/") + "/" + strings.Join(elem, "/"), showPath: e.showPath}
	}
	return Endpoint{raw: u.JoinPath(elem...).String(), showPath: e.showPath}
}

// hidden stands for every part of a URL its shown form leaves out.
const hidden = "..."

// String is the URL as it may be shown.
func (e Endpoint) String() string {
	u, err := neturl.Parse(e.raw)
	if err != nil {
		return "(unparsable URL)"
	}
	shown := neturl.URL{Scheme: u.Scheme, Host: u.Host}
	switch {
	case u.Opaque != "":
		shown.Opaque = hidden
	case e.showPath || u.Path == "" || u.Path == "/":
		shown.Path, shown.RawPath = u.Path, u.RawPath
	default:
		shown.Path = "/" + hidden
	}
	if u.RawQuery != "" {
		shown.RawQuery = hidden
	}
	if u.Fragment != "" {
		shown.Fragment = hidden
	}
	return shown.String()
}

func (e Endpoint) GoString() string             { return `alert.Endpoint("` + e.String() + `")` }
func (e Endpoint) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// minEchoed is the shortest segment of a hidden path, or value of a
// query, that redact looks for on its own. Tokens are longer (Slack's 24
// characters, Google Chat's keys 39, Discord's 68); shorter segments are
// words like "services" or "webhooks" that a message uses too.
const minEchoed = 16

// redact replaces, in text, the whole URL by its shown form and each part
// the shown form hides (a hook's path, a query, and the longer of their
// segments and values) by "...". A receiver's error body may echo its own
// URL or the token in it, and net/http's errors repeat the URL.
func (e Endpoint) redact(text string) string {
	if e.raw == "" {
		return text
	}
	type part struct{ old, new string }
	var parts []part
	hide := func(least int, with string, olds ...string) {
		for _, o := range olds {
			if o != "" && len(o) >= least {
				parts = append(parts, part{o, with})
			}
		}
	}
	if u, err := neturl.Parse(e.raw); err == nil {
		if p, ok := u.User.Password(); ok {
			hide(0, hidden, u.User.String(), p)
		}
		hide(0, hidden, u.Opaque)
		if !e.showPath && u.Path != "/" {
			hide(0, "/"+hidden, u.EscapedPath(), u.Path)
			hide(minEchoed, hidden, strings.Split(u.Path, "/")...)
		}
		if u.RawQuery != "" {
			hide(0, hidden, u.RawQuery)
			for _, vs := range u.Query() {
				hide(minEchoed, hidden, vs...)
			}
		}
		hide(0, hidden, u.EscapedFragment(), u.Fragment)
	}
	// Longest first: the replacer tries its pairs in order, and a path must
	// go whole, not segment by segment.
	slices.SortStableFunc(parts, func(a, b part) int { return cmp.Compare(len(b.old), len(a.old)) })
	pairs := []string{e.raw, e.String()}
	for _, p := range parts {
		pairs = append(pairs, p.old, p.new)
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

// scrub is err as a delivery error may show it. net/http's *url.Error
// names the URL it was posting to (after a redirect, the target's) and is
// replaced by its cause; what the cause says is redacted.
func (e Endpoint) scrub(err error) error {
	var uerr *neturl.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	if text := err.Error(); e.redact(text) != text {
		return &redactedError{text: e.redact(text), err: err}
	}
	return err
}

// redactedError shows a redacted text but still unwraps to the cause, so
// errors.Is(err, context.DeadlineExceeded) keeps working.
type redactedError struct {
	text string
	err  error
}

func (r *redactedError) Error() string { return r.text }
func (r *redactedError) Unwrap() error { return r.err }
