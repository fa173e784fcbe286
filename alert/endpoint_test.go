package alert

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	yaml "go.yaml.in/yaml/v3"
)

// The tokens below all contain "hunter2", so one check finds any leak.
func TestEndpointShown(t *testing.T) {
	for _, tt := range []struct {
		name string
		url  fmt.Stringer
		want string
	}{
		{"slack", HookURL("https://hooks.slack.com/services/T0SELFPROT/B0SELFPROT/hunter2hunter2hunter2xx"), "https://hooks.slack.com/..."},
		{"discord", HookURL("https://discord.com/api/webhooks/112233445566778899/hunter2-discord_token"), "https://discord.com/..."},
		{"google chat", HookURL("https://chat.googleapis.com/v1/spaces/AAAAhunter2/messages?key=hunter2-key&token=hunter2-token"),
			"https://chat.googleapis.com/...?..."},
		{"teams", HookURL("https://contoso.webhook.office.com/webhookb2/0f2a@9c1e/IncomingWebhook/hunter2abc/7d3e"),
			"https://contoso.webhook.office.com/..."},
		{"hook with port", HookURL("http://127.0.0.1:8080/hunter2"), "http://127.0.0.1:8080/..."},
		{"hook at the root", HookURL("https://hooks.example.net/"), "https://hooks.example.net/"},
		{"hook without a path", HookURL("https://hooks.example.net"), "https://hooks.example.net"},
		{"hook with user info", HookURL("https://ops:hunter2@hooks.example.net/x"), "https://hooks.example.net/..."},
		{"hook with a fragment", HookURL("https://hooks.example.net/#hunter2"), "https://hooks.example.net/#..."},
		{"hook with an escaped path", HookURL("https://hooks.example.net/a%2Fhunter2"), "https://hooks.example.net/..."},
		{"unparsable hook", HookURL("https://hooks.example.net/hunter2\x7f"), "(unparsable URL)"},
		{"no hook", HookURL(""), ""},
		{"alertmanager", BaseURL("http://127.0.0.1:9093"), "http://127.0.0.1:9093"},
		{"alertmanager with a prefix", BaseURL("https://am.example.net/alertmanager/"), "https://am.example.net/alertmanager/"},
		{"alertmanager with a query", BaseURL("https://am.example.net/am?token=hunter2"), "https://am.example.net/am?..."},
		{"alertmanager with user info", BaseURL("https://am:hunter2@am.example.net/am"), "https://am.example.net/am"},
		{"alertmanager's API under a prefix", BaseURL("https://am.example.net/am/?token=hunter2").Endpoint().Join("api", "v2", "alerts"),
			"https://am.example.net/am/api/v2/alerts?..."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.url.String())
			asJSON, err := json.Marshal(tt.url)
			require.NoError(t, err)
			asYAML, err := yaml.Marshal(map[string]any{"url": tt.url})
			require.NoError(t, err)
			for how, s := range map[string]string{
				"%v": fmt.Sprintf("%v", tt.url), "%s": fmt.Sprintf("url=%s", tt.url), "%q": fmt.Sprintf("%q", tt.url),
				"%#v": fmt.Sprintf("%#v", tt.url), "%+v": fmt.Sprintf("%+v", struct{ U any }{tt.url}),
				"JSON": string(asJSON), "YAML": string(asYAML),
			} {
				require.NotContains(t, s, "hunter2", "%s reveals the URL's secret: %s", how, s)
				if how != "%#v" && how != "%+v" {
					require.Contains(t, s, tt.want, how)
				}
			}
		})
	}
}

// A receiver's error body, or a library's error, may repeat the URL or a
// part of it: redact leaves none of the parts the shown form hides.
func TestEndpointRedact(t *testing.T) {
	slack := HookURL("https://hooks.slack.com/services/T0SELFPROT/B0SELFPROT/hunter2hunter2hunter2xx").Endpoint()
	chat := HookURL("https://chat.googleapis.com/v1/spaces/AAAA/messages?key=hunter2-chat-key&token=hunter2-chat-token%3D").Endpoint()
	am := BaseURL("https://am.example.net/am-prefix?token=hunter2-am-token").Endpoint()
	for _, tt := range []struct {
		name string
		e    Endpoint
		text string
		want string
	}{
		{"the whole URL", slack, `Post "https://hooks.slack.com/services/T0SELFPROT/B0SELFPROT/hunter2hunter2hunter2xx": EOF`,
			`Post "https://hooks.slack.com/...": EOF`},
		{"the path", slack, "no such hook: /services/T0SELFPROT/B0SELFPROT/hunter2hunter2hunter2xx", "no such hook: /..."},
		{"the token alone", slack, "invalid_token hunter2hunter2hunter2xx", "invalid_token ..."},
		{"short words stay", slack, "no_service: services are down", "no_service: services are down"},
		{"the query", chat, "bad request: key=hunter2-chat-key&token=hunter2-chat-token%3D", "bad request: ..."},
		{"a query value, decoded", chat, `{"error":"token hunter2-chat-token= expired"}`, `{"error":"token ... expired"}`},
		{"an API's path stays", am, "404 page not found: /am-prefix/api/v2/alerts", "404 page not found: /am-prefix/api/v2/alerts"},
		{"an API's query does not", am, "forbidden: token=hunter2-am-token", "forbidden: ..."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.e.redact(tt.text)
			require.Equal(t, tt.want, got)
			require.NotContains(t, got, "hunter2")
		})
	}
}
