package graph

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	nethttplibrary "github.com/microsoft/kiota-http-go"
	core "github.com/microsoftgraph/msgraph-sdk-go-core"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/presence"
)

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func TestResolveEndpoints(t *testing.T) {
	tests := []struct {
		name                          string
		cfg                           config.Graph
		graph, authority, scope, host string
		override                      bool
	}{
		{"default", config.Graph{},
			"https://graph.microsoft.com/v1.0", "https://login.microsoftonline.com/", "https://graph.microsoft.com/.default", "graph.microsoft.com", false},
		{"public", config.Graph{Cloud: "public"},
			"https://graph.microsoft.com/v1.0", "https://login.microsoftonline.com/", "https://graph.microsoft.com/.default", "graph.microsoft.com", false},
		{"usgov", config.Graph{Cloud: "usgov"},
			"https://graph.microsoft.us/v1.0", "https://login.microsoftonline.us/", "https://graph.microsoft.us/.default", "graph.microsoft.us", false},
		{"usgov-dod", config.Graph{Cloud: "usgov-dod"},
			"https://dod-graph.microsoft.us/v1.0", "https://login.microsoftonline.us/", "https://dod-graph.microsoft.us/.default", "dod-graph.microsoft.us", false},
		{"china", config.Graph{Cloud: "china"},
			"https://microsoftgraph.chinacloudapi.cn/v1.0", "https://login.chinacloudapi.cn/", "https://microsoftgraph.chinacloudapi.cn/.default", "microsoftgraph.chinacloudapi.cn", false},
		{"overrides", config.Graph{Cloud: "china", Endpoint: "https://127.0.0.1:8443/v1.0/", AuthorityHost: "https://127.0.0.1:8443"},
			"https://127.0.0.1:8443/v1.0", "https://127.0.0.1:8443/", "https://127.0.0.1:8443/.default", "127.0.0.1", true},
		{"endpoint only", config.Graph{Endpoint: "https://graph-proxy.corp.example/v1.0"},
			"https://graph-proxy.corp.example/v1.0", "https://login.microsoftonline.com/", "https://graph-proxy.corp.example/.default", "graph-proxy.corp.example", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, err := resolveEndpoints(tt.cfg)
			if err != nil {
				t.Fatalf("resolveEndpoints(%+v) = %v", tt.cfg, err)
			}
			got := fmt.Sprint(ep.Graph, " ", ep.Authority, " ", ep.Scope, " ", ep.Host, " ", ep.Override)
			want := fmt.Sprint(tt.graph, " ", tt.authority, " ", tt.scope, " ", tt.host, " ", tt.override)
			if got != want {
				t.Errorf("resolveEndpoints(%+v) = %s; want %s", tt.cfg, got, want)
			}
			if ep.Cloud.ActiveDirectoryAuthorityHost != tt.authority {
				t.Errorf("azcore authority = %q; want %q", ep.Cloud.ActiveDirectoryAuthorityHost, tt.authority)
			}
		})
	}
	for _, bad := range []config.Graph{
		{Cloud: "germany"},
		{Endpoint: "http://graph.microsoft.com/v1.0"},
		{Endpoint: "graph.microsoft.com"},
		{AuthorityHost: "https://user:pw@login.example/"},
		{Endpoint: "https://graph.example/v1.0?x=1"},
	} {
		if _, err := resolveEndpoints(bad); err == nil {
			t.Errorf("resolveEndpoints(%+v) = nil error; want one", bad)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("error shows a password: %v", err)
		}
	}
}

func TestMiddlewareOrder(t *testing.T) {
	got := []string{}
	for _, m := range middlewares(&retryHandler{}, "1.0.0") {
		got = append(got, fmt.Sprintf("%T", m))
	}
	want := []string{
		fmt.Sprintf("%T", &retryHandler{}),
		fmt.Sprintf("%T", nethttplibrary.NewRedirectHandler()),
		fmt.Sprintf("%T", nethttplibrary.NewParametersNameDecodingHandler()),
		fmt.Sprintf("%T", nethttplibrary.NewUserAgentHandler()),
		fmt.Sprintf("%T", core.NewGraphTelemetryHandler(&core.GraphClientOptions{})),
		fmt.Sprintf("%T", nethttplibrary.NewHeadersInspectionHandler()),
		fmt.Sprintf("%T", recorder{}),
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("middlewares = %v; want %v", got, want)
	}
	for _, m := range got {
		if strings.Contains(m, "Compression") || strings.Contains(m, "RetryHandler") {
			t.Errorf("middleware %s must not be in the chain", m)
		}
	}
}

func TestISODuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{5 * time.Minute, "PT5M"},
		{90 * time.Minute, "PT1H30M"},
		{4 * time.Hour, "PT4H"},
		{2*time.Hour + 5*time.Second, "PT2H5S"},
		{17*time.Minute + 59*time.Second, "PT17M59S"},
	}
	for _, tt := range tests {
		if got := isoDuration(tt.in).String(); got != tt.want {
			t.Errorf("isoDuration(%s) = %s; want %s", tt.in, got, tt.want)
		}
	}
}

func TestClassifyOddInputs(t *testing.T) {
	// No panic and a sensible Kind for every shape of answer.
	now := time.Now()
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		err    error
		want   presence.Kind
	}{
		{"nil", 0, nil, "", nil, 0},
		{"200", 200, nil, "", nil, 0},
		{"404", 404, nil, "", fmt.Errorf("x"), presence.NotFound},
		{"408", 408, nil, "\x00\xff\xfe", fmt.Errorf("x"), presence.Retry},
		{"429 bad retry-after", 429, http.Header{"Retry-After": {"whenever"}}, "", fmt.Errorf("x"), presence.Retry},
		{"long body", 400, nil, strings.Repeat("é", 5000), fmt.Errorf("x"), presence.Permanent},
		{"transport", 0, nil, "", fmt.Errorf("dial tcp: connection refused"), presence.Retry},
		{"canceled", 0, nil, "", context.Canceled, presence.Retry},
		{"deadline", 0, nil, "", context.DeadlineExceeded, presence.Retry},
		{"200 unreadable", 200, nil, "", fmt.Errorf("contentType is not valid"), presence.Retry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &outcome{status: tt.status, header: tt.header, body: []byte(tt.body)}
			pe := classify("setPresence", "u", tt.err, o, now)
			if tt.want == 0 {
				if pe != nil {
					t.Errorf("classify = %v; want nil", pe)
				}
				return
			}
			if pe == nil || pe.Kind != tt.want {
				t.Fatalf("classify = %+v; want kind %s", pe, tt.want)
			}
			if len(pe.Message) > 210 {
				t.Errorf("message of %d bytes; want an excerpt", len(pe.Message))
			}
		})
	}
}
