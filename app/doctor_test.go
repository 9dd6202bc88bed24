package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/graphtest"
)

func TestRolesCheck(t *testing.T) {
	for _, tt := range []struct {
		roles  []string
		status CheckStatus
		want   string
	}{
		{[]string{"Presence.ReadWrite.All", "User.Read.All"}, CheckPassed, "token roles Presence.ReadWrite.All, User.Read.All"},
		// Directory.Read.All reads users too.
		{[]string{"Directory.Read.All", "Presence.ReadWrite.All"}, CheckPassed, "token roles Directory.Read.All, Presence.ReadWrite.All"},
		{[]string{"User.Read.All"}, CheckFailed, "token lacks Presence.ReadWrite.All: grant it (API permissions → Microsoft Graph → Application → Presence.ReadWrite.All) and consent;"},
		// Presence.Read.All reads presence but cannot set it.
		{[]string{"Presence.Read.All", "User.Read.All"}, CheckFailed, "token lacks Presence.ReadWrite.All: grant it"},
		{[]string{"Presence.ReadWrite.All"}, CheckFailed, "token lacks User.Read.All: grant it (API permissions → Microsoft Graph → Application → User.Read.All) and consent;"},
		{[]string{}, CheckFailed, "token lacks Presence.ReadWrite.All, User.Read.All: grant them"},
	} {
		got := rolesCheck(tt.roles)
		if got.Status != tt.status || got.Name != "graph" || !strings.HasPrefix(got.Detail, tt.want) {
			t.Errorf("rolesCheck(%q) = %q; want %s starting %q", tt.roles, got, tt.status.Mark(), tt.want)
		}
	}
}

func TestSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		36 * time.Hour: "36h", 90 * time.Minute: "1h30m", 30 * time.Minute: "30m", 45 * time.Second: "45s", 90 * time.Second: "1m30s", 0: "0s",
	} {
		if got := span(d); got != want {
			t.Errorf("span(%v) = %q; want %q", d, got, want)
		}
	}
}

// TestDoctorGraphRefusals: a 403 to a lookup or to the read-back names the
// role that is missing.
func TestDoctorGraphRefusals(t *testing.T) {
	for _, tt := range []struct {
		op   string
		want string
	}{
		{graphtest.OpGetUser, "✗ user alice@contoso.com: resolveUser for alice@contoso.com: HTTP 403"},
		{graphtest.OpReadPresences, "✗ read-back: alice@contoso.com: "},
	} {
		t.Run(tt.op, func(t *testing.T) {
			g := graphtest.NewServer(t, graphtest.WithUsers(graphtest.User{ID: "0d3c1e6a-0000-4000-8000-000000000001", UserPrincipalName: "alice@contoso.com"}))
			g.SetAppRoles("Presence.ReadWrite.All", "User.Read.All")
			g.FailNext(tt.op, 1, 403, "")
			cfg := doctorConfig(t, g, string(g.Config().ClientSecret), "alice@contoso.com")
			var lines []string
			if err := Doctor(context.Background(), cfg, DoctorOptions{}, func(c Check) { lines = append(lines, c.String()) }); err != nil {
				t.Fatalf("Doctor = %v", err)
			}
			var found string
			for _, l := range lines {
				if strings.HasPrefix(l, tt.want) {
					found = l
				}
			}
			role := map[string]string{graphtest.OpGetUser: "User.Read.All", graphtest.OpReadPresences: "Presence.ReadWrite.All"}[tt.op]
			if !strings.Contains(found, "HTTP 403") || !strings.Contains(found, "grant "+role) {
				t.Errorf("Doctor printed:\n%s\nwant a line starting %q naming HTTP 403 and %s", strings.Join(lines, "\n"), tt.want, role)
			}
		})
	}
}

// TestDoctorWrongSecret: the authority's refusal is one line, with Entra's
// code, and the Graph checks that need a token are not made.
func TestDoctorWrongSecret(t *testing.T) {
	g := graphtest.NewServer(t)
	var lines []string
	if err := Doctor(context.Background(), doctorConfig(t, g, "wrong", "alice@contoso.com"), DoctorOptions{}, func(c Check) { lines = append(lines, c.String()) }); err != nil {
		t.Fatalf("Doctor = %v", err)
	}
	want := []string{"✗ graph: token from " + g.AuthorityHost() + ": ClientSecretCredential authentication failed. AADSTS7000215: Invalid client secret provided.",
		"– users: not checked: no token for Graph", "– read-back: not checked: no token for Graph"}
	for i, w := range want {
		if i >= len(lines) || !strings.HasPrefix(lines[i], w) || strings.Contains(lines[i], "\n") {
			t.Errorf("Doctor printed:\n%s\nwant line %d to start %q, on one line", strings.Join(lines, "\n"), i+1, w)
		}
	}
}

// TestDoctorManyUnresolved: past maxUserLines, the users who did not
// resolve are counted on one line, not listed.
func TestDoctorManyUnresolved(t *testing.T) {
	g := graphtest.NewServer(t)
	g.SetAppRoles("Presence.ReadWrite.All", "User.Read.All")
	var users []string
	for i := range maxUserLines + 5 {
		users = append(users, fmt.Sprintf("nobody%02d@contoso.com", i))
	}
	var failed []string
	err := Doctor(context.Background(), doctorConfig(t, g, string(g.Config().ClientSecret), users...), DoctorOptions{}, func(c Check) {
		if c.Status == CheckFailed {
			failed = append(failed, c.String())
		}
	})
	if err != nil {
		t.Fatalf("Doctor = %v", err)
	}
	want := fmt.Sprintf("✗ users: 5 more of the %d configured users not resolved, not listed", len(users))
	if len(failed) != maxUserLines+1 || !strings.HasPrefix(failed[0], "✗ user nobody00@contoso.com: ") || failed[maxUserLines] != want {
		t.Errorf("Doctor failed:\n%s\nwant %d lines naming a user, then %q", strings.Join(failed, "\n"), maxUserLines, want)
	}
}

// doctorConfig loads a configuration for g with one file feed.
func doctorConfig(t *testing.T, g *graphtest.Server, secret string, users ...string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	gc := g.Config()
	yaml := fmt.Sprintf("graph:\n  tenant_id: %s\n  client_id: %s\n  client_secret: %s\n  endpoint: %s\n  authority_host: %s\n  ca_file: %s\n"+
		"state:\n  path: %s\nserver:\n  listen: \"\"\nsources:\n  - name: empty\n    url: file://%s\n    users: [%s]\n",
		gc.TenantID, gc.ClientID, secret, gc.Endpoint, gc.AuthorityHost, gc.CAFile,
		filepath.Join(dir, "state.db"), filepath.Join(dir, "empty.ics"), strings.Join(users, ", "))
	for name, body := range map[string]string{"config.yaml": yaml, "empty.ics": feed} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestDoctorWebex: Webex Calling's access token file is checked when
// configured: readable, not empty, and accepted by GET {api}/people/me
// when Webex can be reached. The token is never printed.
func TestDoctorWebex(t *testing.T) {
	const token = "webex-token-0123456789"
	status := 0 // what the fake Webex answers a good token; 0: 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != http.MethodGet || r.URL.Path != "/v1/people/me":
			http.NotFound(w, r)
		case r.Header.Get("Authorization") != "Bearer "+token:
			http.Error(w, `{"message":"The request requires a valid access token set in the Authorization request header."}`, http.StatusUnauthorized)
		case status != 0:
			w.WriteHeader(status)
		default:
			io.WriteString(w, `{"id":"Y2lzY29zcGFyazovL3VzL1BFT1BMRS8x","emails":["bot@contoso.com"]}`)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, stale, empty := file("good", token+"\n"), file("stale", "expired-token"), file("empty", " \n")
	for _, tt := range []struct {
		name   string
		file   string
		api    string
		status int
		want   string // the line's start; "" no line
	}{
		{"not configured", "", srv.URL + "/v1", 0, ""},
		{"accepted", good, srv.URL + "/v1/", 0, "✓ webex: the access token in " + good + " is accepted (GET " + srv.URL + "/v1/people/me: 200)"},
		{"expired", stale, srv.URL + "/v1", 0, "✗ webex: Webex refuses the access token in " + stale + " (GET " + srv.URL + "/v1/people/me: 401): it expired or was revoked"},
		{"without the scope", good, srv.URL + "/v1", http.StatusForbidden, "✗ webex: Webex refuses the access token in " + good + " (GET " + srv.URL + "/v1/people/me: 403): it needs the scope spark:people_read"},
		{"webex failing", good, srv.URL + "/v1", http.StatusBadGateway, "✗ webex: GET " + srv.URL + "/v1/people/me with the access token in " + good + ": HTTP 502"},
		{"empty", empty, srv.URL + "/v1", 0, "✗ webex: webhooks.webex.access_token_file: " + empty + " is empty"},
		{"gone", filepath.Join(dir, "gone"), srv.URL + "/v1", 0, "✗ webex: webhooks.webex.access_token_file: open " + filepath.Join(dir, "gone") + ": no such file or directory"},
		{"webex not reached", good, closed.URL + "/v1", 0, "– webex: the access token in " + good + " is not checked: Webex (" + closed.URL + "/v1) was not reached: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status = tt.status
			cfg := &config.Config{Webhooks: &config.Webhooks{Webex: &config.WebexWebhook{Secret: "s", AccessTokenFile: tt.file, API: tt.api}}}
			c, ok := doctorWebex(context.Background(), cfg)
			switch {
			case tt.want == "" && ok:
				t.Errorf("doctorWebex = %q; want no line", c)
			case tt.want != "" && (!ok || !strings.HasPrefix(c.String(), tt.want)):
				t.Errorf("doctorWebex = %q, %v; want a line starting %q", c, ok, tt.want)
			}
			if strings.Contains(c.String(), token) {
				t.Errorf("doctorWebex = %q; it shows the token", c)
			}
		})
	}
}
