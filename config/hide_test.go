package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// TestHideConfigSecrets proves that no way of printing a loaded config shows
// a secret: the Graph client secret and certificate password, feed tokens in
// URLs (query, userinfo) and header values.
func TestHideConfigSecrets(t *testing.T) {
	secrets := map[string]string{
		"AZURE_TENANT_ID":     "contoso.onmicrosoft.com",
		"AZURE_CLIENT_SECRET": "client-secret-0xDEADBEEF",
		"ZOOM_TOKEN":          "zoom-token-0xFEEDFACE",
		"FEED_TOKEN":          "feed-token-0xCAFEBABE",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	c, err := config.Load("testdata/valid-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Cover the other secrets too.
	c.Graph.CertificatePassword = "cert-password-0xBAADF00D"
	c.Sources[1].URL = "https://user:userinfo-0x8BADF00D@example.com/calendar/ical/private-0123456789abcdef0123456789abcdef/basic.ics"
	c.Webhooks = &config.Webhooks{Zoom: &config.ZoomWebhook{SecretToken: "zoom-webhook-0xABADCAFE"}, Webex: &config.WebexWebhook{Secret: "webex-webhook-0xDEFEC8ED"}}
	c.State = config.State{Driver: config.DriverPostgres, DSN: "postgres://calpresence:dsn-password-0xC0FFEE@db.example/calpresence?sslmode=verify-full&sslpassword=ssl-key-0xBADC0DE"}
	hidden := []string{
		"dsn-password-0xC0FFEE", "ssl-key-0xBADC0DE",
		"zoom-webhook-0xABADCAFE", "webex-webhook-0xDEFEC8ED",
		"client-secret-0xDEADBEEF", "zoom-token-0xFEEDFACE", "feed-token-0xCAFEBABE",
		"cert-password-0xBAADF00D", "userinfo-0x8BADF00D", "0123456789abcdef0123456789abcdef",
	}

	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "config", c, "source", c.Sources[0], "graph", c.Graph)
	dumps := map[string]string{
		"yaml.Marshal(c)":  string(y),
		"yaml.Marshal(*c)": mustYAML(t, *c),
		"json.Marshal(c)":  string(j),
		"c.String()":       c.String(),
		"%v c":             fmt.Sprintf("%v", c),
		"%+v c":            fmt.Sprintf("%+v", c),
		"%v *c":            fmt.Sprintf("%v", *c),
		"%+v *c":           fmt.Sprintf("%+v", *c),
		"%#v *c":           fmt.Sprintf("%#v", *c),
		"%v graph":         fmt.Sprintf("%v", c.Graph),
		"%+v %#v state":    fmt.Sprintf("%+v %#v %s", c.State, c.State, c.State.DSN),
		"Summary()":        c.Summary(),
		"%+v webhooks":     fmt.Sprintf("%+v %+v %+v", *c.Webhooks, *c.Webhooks.Zoom, *c.Webhooks.Webex),
		"%+v sources":      fmt.Sprintf("%+v", c.Sources),
		"%#v sources":      fmt.Sprintf("%#v", c.Sources),
		"%q secret":        fmt.Sprintf("%q", c.Graph.ClientSecret),
		"slog":             logged.String(),
		"Redacted()":       fmt.Sprintf("%+v %#v", *c.Redacted(), c.Redacted().Graph),
	}
	for name, out := range dumps {
		for _, s := range hidden {
			if strings.Contains(out, s) {
				t.Errorf("%s shows secret %q:\n%s", name, s, out)
			}
		}
	}
	for _, want := range []string{
		"client_secret: <secret>",
		"certificate_password: <secret>",
		"url: https://example.zoom.us/feed.ics?<redacted>",
		"Authorization: <redacted>",
		"dsn: postgres://calpresence:xxxxx@db.example/calpresence?sslmode=verify-full&sslpassword=xxxxx",
	} {
		if !strings.Contains(string(y), want) {
			t.Errorf("yaml.Marshal(c) lacks %q:\n%s", want, y)
		}
	}

	// Redacted and String leave the config itself alone.
	if c.Graph.ClientSecret != "client-secret-0xDEADBEEF" ||
		c.Sources[0].Headers["Authorization"] != "Bearer feed-token-0xCAFEBABE" ||
		c.Sources[0].URL != "https://example.zoom.us/feed.ics?token=zoom-token-0xFEEDFACE" {
		t.Errorf("dumping changed the config: %#v", c.Graph)
	}
	// The dump is still a readable config: durations in Go form.
	if !strings.Contains(string(y), "poll_interval: 10m0s") {
		t.Errorf("yaml.Marshal(c) lacks poll_interval: 10m0s:\n%s", y)
	}
}

func mustYAML(t *testing.T, v any) string {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestSummary(t *testing.T) {
	c := config.Default()
	c.Sources = []config.Source{
		{Name: "a", Users: []string{"alice@contoso.com", "bob@contoso.com"}},
		{Name: "b", Users: []string{"Alice@contoso.com"}},
		{Name: "c", Match: "attendees"},
	}
	c.Users = []config.User{
		{Email: "x@partner.example", User: "carol@contoso.com"},
		{Email: "y@partner.example", User: "dave@contoso.com"},
		{Email: "z@partner.example", User: "bob@contoso.com"},
	}
	c.Graph.DryRun = true
	want := "3 sources, 4 users (2 fixed, 3 mapped), dry run"
	if got := c.Summary(); got != want {
		t.Errorf("Summary() = %q; want %q", got, want)
	}
	c = config.Default()
	c.Sources = []config.Source{{Name: "a", Users: []string{"alice@contoso.com"}}}
	want = "1 source, 1 user (1 fixed, 0 mapped)"
	if got := c.Summary(); got != want {
		t.Errorf("Summary() = %q; want %q", got, want)
	}
}

func TestUserFor(t *testing.T) {
	c := config.Default()
	c.Users = []config.User{
		{Email: "Alice@Partner.Example", User: "alice@contoso.com"},
		{Email: "bob@partner.example", User: "6f1c2d3e-0000-4000-8000-000000000001"},
	}
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"alice@partner.example", "alice@contoso.com", true},
		{"ALICE@PARTNER.EXAMPLE", "alice@contoso.com", true},
		{"mailto:alice@partner.example", "alice@contoso.com", true},
		{"MAILTO:Bob@partner.example", "6f1c2d3e-0000-4000-8000-000000000001", true},
		{"carol@partner.example", "", false},
		{"", "", false},
	}
	idx := c.UserIndex()
	for _, tt := range tests {
		got, ok := c.UserFor(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("UserFor(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		got, ok = idx[mailaddr.Normalize(tt.in)]
		if got != tt.want || ok != tt.ok {
			t.Errorf("UserIndex()[mailaddr.Normalize(%q)] = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSourcePresence(t *testing.T) {
	lead, grace := 2*time.Minute, time.Duration(0)
	c := config.Default()
	c.Presence.Lead, c.Presence.Grace = time.Minute, time.Minute
	c.Sources = []config.Source{
		{Name: "inherit"},
		{Name: "override", Activity: "InACall", Lead: &lead, Grace: &grace},
	}
	want := []config.Presence{
		{Availability: "Busy", Activity: "InAConferenceCall", Lead: time.Minute, Grace: time.Minute, MergeGap: 2 * time.Minute, MaxLease: 4 * time.Hour, LeadBurst: 5 * time.Second},
		{Availability: "Busy", Activity: "InACall", Lead: 2 * time.Minute, Grace: 0, MergeGap: 2 * time.Minute, MaxLease: 4 * time.Hour, LeadBurst: 5 * time.Second},
	}
	for i, w := range want {
		if got := c.SourcePresence(i); got != w {
			t.Errorf("SourcePresence(%d) = %+v; want %+v", i, got, w)
		}
	}
}

func TestValidateInCode(t *testing.T) {
	c := config.Default()
	c.Graph.DryRun = true
	c.Sources = []config.Source{{Name: "a", URL: "https://x.example/a.ics", Users: []string{"u@x.example"}}}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v; want nil", err)
	}
	if got := c.SourcePollInterval(0); got != 5*time.Minute {
		t.Errorf("SourcePollInterval(0) = %v; want the schedule's 5m0s", got)
	}
	c.Sources[0].URL = "ftp://x.example/a.ics?token=abc"
	c.Schedule.Horizon = 0
	want := "schedule.horizon: must be positive (got 0s)\n" +
		`sources[0].url: must be http(s) or file (got "ftp://x.example/a.ics?<redacted>")`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
	}
	c.Path = "config.yaml"
	want = "config.yaml: schedule.horizon: must be positive (got 0s)\n" +
		`config.yaml: sources[0].url: must be http(s) or file (got "ftp://x.example/a.ics?<redacted>")`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
	}
}

// A dump is a config again: what it shows re-parses to the same values,
// apart from what it hides.
func TestDumpRoundTrip(t *testing.T) {
	t.Setenv("AZURE_TENANT_ID", "t")
	t.Setenv("AZURE_CLIENT_SECRET", "s")
	t.Setenv("ZOOM_TOKEN", "z")
	t.Setenv("FEED_TOKEN", "f")
	c, err := config.Load("testdata/valid-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	again, err := config.Parse([]byte(c.String()), c.Path)
	if err != nil {
		t.Fatalf("Parse(c.String()): %v\n%s", err, c)
	}
	want := c.Redacted()
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("Parse(c.String()) mismatch (-want +got):\n%s", diff)
	}
}
