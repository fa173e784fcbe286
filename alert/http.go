package alert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/selfprotect/selfprotect/strictyaml"
)

// maxCAFile bounds a CA file: a system bundle is ~200 KiB.
const maxCAFile = 4 << 20

// TLSConfig trusts the PEM certificates in caFile instead of the system's
// roots when caFile is set; verification is never switched off.
func TLSConfig(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := strictyaml.ReadConfigFile(caFile, maxCAFile)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// HTTPClient is the client of the HTTP integrations. Its timeout is the
// dispatcher's per-send context, not a client setting.
func HTTPClient(caFile string) (*http.Client, error) {
	tlsCfg, err := TLSConfig(caFile, "")
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &http.Client{Transport: tr}, nil
}

// PostJSON posts body as JSON to the endpoint with an optional bearer
// token and says whether a failure is worth retrying: network errors, 5xx,
// 408, 429, and 401/403 (an operator may fix the credential while the
// alert waits) are; other 4xx mean the request itself is wrong. Its errors
// end up in logs, status and the outbox, so they show the endpoint as
// Endpoint.String does and never the URL itself.
func PostJSON(ctx context.Context, c *http.Client, to Endpoint, token Secret, alertID string, body any) (retry bool, err error) {
	data, err := json.Marshal(body)
	if err != nil {
		return false, fmt.Errorf("encoding request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, to.Reveal(), bytes.NewReader(data))
	if err != nil {
		return false, fmt.Errorf("building request to %s: %w", to, to.scrub(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "selfprotect")
	if alertID != "" {
		// Receivers dedupe a re-send after a crash by this key.
		req.Header.Set("Idempotency-Key", alertID)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token.Reveal())
	}
	resp, err := c.Do(req)
	if err != nil {
		return true, fmt.Errorf("posting to %s: %w", to, to.scrub(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	msg := strings.TrimSpace(string(snippet))
	if token != "" {
		// A peer may echo the header back; never log it.
		msg = strings.ReplaceAll(msg, token.Reveal(), redacted)
	}
	err = fmt.Errorf("posting to %s: %s: %s", to, resp.Status, to.redact(msg))
	switch {
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout,
		resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusUnauthorized,
		resp.StatusCode == http.StatusForbidden:
		return true, err
	}
	return false, err
}
