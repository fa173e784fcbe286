// Package webhook posts each alert as JSON to a URL, with an optional
// bearer token and the alert ID as Idempotency-Key.
package webhook

import (
	"context"
	"fmt"
	"net/http"

	"github.com/selfprotect/selfprotect/alert"
)

// Notifier posts to one URL.
type Notifier struct {
	to     alert.Endpoint
	token  alert.Secret
	client *http.Client
}

// New builds the notifier from its configuration.
func New(cfg alert.WebhookConfig) (*Notifier, error) {
	c, err := alert.HTTPClient(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return &Notifier{to: cfg.URL.Endpoint(), token: cfg.BearerToken, client: c}, nil
}

// Payload is the body posted: the alert with a version, so receivers can
// tell formats apart if it ever changes.
type Payload struct {
	Version string      `json:"version"`
	Alert   alert.Alert `json:"alert"`
}

func (n *Notifier) Notify(ctx context.Context, a alert.Alert) (bool, error) {
	return alert.PostJSON(ctx, n.client, n.to, n.token, a.ID, Payload{Version: "1", Alert: a})
}
