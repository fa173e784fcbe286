package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/alert"
)

func sample() alert.Alert {
	c := "5f0c8a52-7e1d-4d55-9a3c-0b8e2f6a9d41"
	return alert.Alert{
		ID: alert.StableID("db-7", c, alert.Isolated), Case: c, Transition: alert.Isolated,
		Severity: alert.SeverityWarning, Suspect: "page:0x2d94", FRU: "dimm:mc0/CPU_SrcID#0_Ha#0_Chan#1_DIMM#0",
		Summary: "2 corrected errors on one page within 24h", EvidenceCount: 2, Host: "db-7",
		Undo: "selfprotect repair 5f0c8a52", Time: time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC),
	}
}

type received struct {
	auth, idem, ctype string
	body              Payload
}

func TestWebhook(t *testing.T) {
	var mu sync.Mutex
	var got []received
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		var p Payload
		if err := json.Unmarshal(data, &p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		got = append(got, received{r.Header.Get("Authorization"), r.Header.Get("Idempotency-Key"), r.Header.Get("Content-Type"), p})
		w.WriteHeader(status)
		io.WriteString(w, "echo "+r.Header.Get("Authorization"))
	}))
	defer srv.Close()

	for _, tc := range []struct {
		name      string
		token     alert.Secret
		status    int
		wantRetry bool
		wantErr   string
	}{
		{"ok with token", "s3cr3t-token", http.StatusOK, false, ""},
		{"ok without token", "", http.StatusAccepted, false, ""},
		{"server error is retried", "s3cr3t-token", http.StatusBadGateway, true, "502 Bad Gateway"},
		{"rejected token is retried", "s3cr3t-token", http.StatusUnauthorized, true, "401 Unauthorized"},
		{"bad request is not", "", http.StatusBadRequest, false, "400 Bad Request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			got, status = nil, tc.status
			mu.Unlock()
			n, err := New(alert.WebhookConfig{URL: alert.HookURL(srv.URL + "/hook"), BearerToken: tc.token})
			require.NoError(t, err)
			retry, err := n.Notify(context.Background(), sample())
			require.Equal(t, tc.wantRetry, retry)
			if tc.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.wantErr)
				require.NotContains(t, err.Error(), "s3cr3t", "a peer echoing the token does not leak it")
			}
			require.Len(t, got, 1)
			want := ""
			if tc.token != "" {
				want = "Bearer " + tc.token.Reveal()
			}
			require.Equal(t, want, got[0].auth)
			require.Equal(t, sample().ID, got[0].idem)
			require.Equal(t, "application/json", got[0].ctype)
			require.Equal(t, "1", got[0].body.Version)
			require.Equal(t, sample(), got[0].body.Alert)
		})
	}
}

func TestWebhookUnreachableIsRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	n, err := New(alert.WebhookConfig{URL: alert.HookURL(url)})
	require.NoError(t, err)
	retry, err := n.Notify(context.Background(), sample())
	require.True(t, retry)
	require.ErrorContains(t, err, "connection refused")
}

func TestWebhookTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	// Untrusted: the system roots do not know httptest's certificate.
	n, err := New(alert.WebhookConfig{URL: alert.HookURL(srv.URL)})
	require.NoError(t, err)
	retry, err := n.Notify(context.Background(), sample())
	require.Error(t, err)
	require.True(t, retry)
	require.ErrorContains(t, err, "certificate")
}

func TestWebhookCancelled(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	n, err := New(alert.WebhookConfig{URL: alert.HookURL(srv.URL)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	retry, err := n.Notify(ctx, sample())
	require.True(t, retry)
	require.ErrorIs(t, err, context.Canceled)
}

func TestWebhookErrorsHideTheQuery(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	defer srv.Close()
	for _, url := range []string{srv.URL + "/hook?token=hunter2-query", "http://127.0.0.1:1/hook?token=hunter2-query"} {
		n, err := New(alert.WebhookConfig{URL: alert.HookURL(url)})
		require.NoError(t, err)
		_, err = n.Notify(context.Background(), sample())
		require.Error(t, err)
		require.NotContains(t, err.Error(), "hunter2", "a token in the query leaks into the error")
		require.Contains(t, err.Error(), "/...?...")
	}
}

// Slack, Discord and most receivers take their token in the path: no
// delivery error shows it, whether net/http failed (connection refused,
// too many redirects: its *url.Error names the URL) or the receiver
// answered with an error that echoes it.
func TestWebhookErrorsHideThePath(t *testing.T) {
	const path = "/services/T0SELFPROT/B0SELFPROT/hunter2hunter2hunter2xx"
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case path + "/loop":
			http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
		default:
			http.Error(w, "no hook at "+r.URL.Path+"; token "+strings.TrimPrefix(r.URL.Path, "/services/T0SELFPROT/B0SELFPROT/"),
				http.StatusNotFound)
		}
	}))
	defer echo.Close()
	for _, tt := range []struct {
		name, base, suffix, want string
		retry                    bool
	}{
		{"connection refused", closed.URL, "", "connection refused", true},
		{"redirect loop", echo.URL, "/loop", "stopped after 10 redirects", true},
		{"error body echoes the path", echo.URL, "", "404 Not Found: no hook at /...; token ...", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, err := New(alert.WebhookConfig{URL: alert.HookURL(tt.base + path + tt.suffix)})
			require.NoError(t, err)
			retry, err := n.Notify(context.Background(), sample())
			require.Equal(t, tt.retry, retry)
			require.ErrorContains(t, err, tt.want)
			require.ErrorContains(t, err, "posting to "+tt.base+"/...: ")
			require.NotContains(t, err.Error(), "hunter2", "the hook's token leaks into the error")
			require.NotContains(t, err.Error(), "/services/")
		})
	}
}
