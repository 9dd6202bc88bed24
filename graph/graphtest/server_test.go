package graphtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
)

// client is a plain HTTP client for the fake.
type client struct {
	t     *testing.T
	srv   *graphtest.Server
	hc    *http.Client
	token string
}

func newClient(t *testing.T, opts ...graphtest.Option) *client {
	srv := graphtest.NewServer(t, opts...)
	c := &client{t: t, srv: srv, hc: srv.HTTPClient()}
	status, body := c.tokenRequest(url.Values{
		"grant_type": {"client_credentials"}, "client_id": {srv.ClientID()},
		"client_secret": {srv.ClientSecret()}, "scope": {srv.URL() + "/.default"},
	})
	if status != 200 {
		t.Fatalf("token request = %d %s", status, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn <= 0 {
		t.Fatalf("token response %s (%v)", body, err)
	}
	c.token = tok.AccessToken
	return c
}

func (c *client) tokenRequest(form url.Values) (int, []byte) {
	resp, err := c.hc.PostForm(c.srv.URL()+"/"+c.srv.TenantID()+"/oauth2/v2.0/token", form)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *client) do(method, path, body string, header http.Header) (int, []byte, error) {
	req, err := http.NewRequest(method, c.srv.GraphURL()+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}

func (c *client) set(user, body string) (int, string) {
	status, b, err := c.do("POST", "/users/"+user+"/presence/setPresence", body, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return status, string(b)
}

func (c *client) clear(user string) int {
	status, _, err := c.do("POST", "/users/"+user+"/presence/clearPresence", `{"sessionId":"`+c.srv.ClientID()+`"}`, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return status
}

func setBody(session, availability, activity, exp string) string {
	b, _ := json.Marshal(map[string]string{"sessionId": session, "availability": availability, "activity": activity, "expirationDuration": exp})
	return string(b)
}

func TestOpenIDConfiguration(t *testing.T) {
	srv := graphtest.NewServer(t)
	resp, err := srv.HTTPClient().Get(srv.URL() + "/" + srv.TenantID() + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	base := srv.URL() + "/" + srv.TenantID()
	if doc["token_endpoint"] != base+"/oauth2/v2.0/token" || doc["issuer"] != base+"/v2.0" ||
		doc["authorization_endpoint"] != base+"/oauth2/v2.0/authorize" {
		t.Errorf("openid configuration = %v", doc)
	}
}

func TestTokenEndpoint(t *testing.T) {
	c := newClient(t)
	base := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.srv.ClientID()},
		"client_secret": {c.srv.ClientSecret()}, "scope": {c.srv.URL() + "/.default"}}
	tests := []struct {
		name   string
		edit   func(url.Values)
		status int
		code   string
	}{
		{"wrong secret", func(v url.Values) { v.Set("client_secret", "nope") }, 401, "invalid_client"},
		{"unknown client", func(v url.Values) { v.Set("client_id", "someone-else") }, 400, "unauthorized_client"},
		{"no .default scope", func(v url.Values) { v.Set("scope", "User.Read") }, 400, "invalid_scope"},
		{"other grant", func(v url.Values) { v.Set("grant_type", "password") }, 400, "unsupported_grant_type"},
		{"no credential", func(v url.Values) { v.Del("client_secret") }, 401, "invalid_client"},
		{"bogus assertion", func(v url.Values) {
			v.Del("client_secret")
			v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			v.Set("client_assertion", "a.b.c")
		}, 401, "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{}
			for k, v := range base {
				form[k] = append([]string(nil), v...)
			}
			tt.edit(form)
			status, body := c.tokenRequest(form)
			var e struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(body, &e)
			if status != tt.status || e.Error != tt.code {
				t.Errorf("token = %d %s; want %d %s", status, body, tt.status, tt.code)
			}
		})
	}
	// Secrets are not recorded.
	for _, call := range c.srv.CallsOp(graphtest.OpToken) {
		if call.Query.Get("client_secret") != "" || call.Body != nil {
			t.Errorf("token call records a secret: %+v", call)
		}
	}
}

func TestSetPresenceValidation(t *testing.T) {
	c := newClient(t)
	id := c.srv.ClientID()
	tests := []struct {
		name   string
		body   string
		status int
	}{
		{"ok", setBody(id, "Busy", "InAConferenceCall", "PT1H30M"), 200},
		{"ok default expiration", `{"sessionId":"` + id + `","availability":"Busy","activity":"InACall"}`, 200},
		{"max", setBody(id, "Busy", "InACall", "PT4H"), 200},
		{"min", setBody(id, "Busy", "InACall", "PT5M"), 200},
		{"too short", setBody(id, "Busy", "InACall", "PT4M59S"), 400},
		{"too long", setBody(id, "Busy", "InACall", "PT4H1S"), 400},
		{"not iso", setBody(id, "Busy", "InACall", "1h30m"), 400},
		{"bad pair", setBody(id, "Busy", "Presenting", "PT1H"), 400},
		{"unknown availability", setBody(id, "Bsy", "InACall", "PT1H"), 400},
		{"wrong session", setBody("00000000-0000-0000-0000-000000000000", "Busy", "InACall", "PT1H"), 400},
		{"no session", setBody("", "Busy", "InACall", "PT1H"), 400},
		{"unknown field", `{"sessionId":"` + id + `","availability":"Busy","activity":"InACall","foo":1}`, 400},
		{"not json", `Busy`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := c.set("alice@contoso.com", tt.body)
			if status != tt.status {
				t.Errorf("setPresence(%s) = %d %s; want %d", tt.body, status, body, tt.status)
			}
			if status == 400 && !strings.Contains(body, `"code":"BadRequest"`) {
				t.Errorf("400 body = %s; want an ODataError", body)
			}
		})
	}
	c.token = "forged"
	if status, _ := c.set("alice@contoso.com", setBody(id, "Busy", "InACall", "PT1H")); status != 401 {
		t.Errorf("setPresence with a forged token = %d; want 401", status)
	}
}

func TestSessions(t *testing.T) {
	c := newClient(t)
	if got := c.clear("alice"); got != 404 {
		t.Errorf("clear without session = %d; want 404", got)
	}
	if status, body := c.set("alice", setBody(c.srv.ClientID(), "Busy", "InACall", "PT10M")); status != 200 {
		t.Fatalf("set = %d %s", status, body)
	}
	se, ok := c.srv.Session("alice")
	if !ok || se.Activity != "InACall" || se.Expiration != 10*time.Minute {
		t.Errorf("Session = %+v, %v", se, ok)
	}
	c.srv.Advance(11 * time.Minute)
	if _, ok := c.srv.Session("alice"); ok {
		t.Errorf("session alive after its expiration")
	}
	if got := c.clear("alice"); got != 404 {
		t.Errorf("clear after expiry = %d; want 404", got)
	}
	c.srv.SetSession(graphtest.Session{User: "bob", Availability: "Busy", Activity: "InACall", Expires: c.srv.Now().Add(time.Hour)})
	if got := c.clear("bob"); got != 200 {
		t.Errorf("clear of installed session = %d; want 200", got)
	}
	if got := c.clear("bob"); got != 404 {
		t.Errorf("second clear = %d; want 404", got)
	}
}

func TestTokenExpiry(t *testing.T) {
	c := newClient(t, graphtest.WithTokenLifetime(10*time.Minute))
	c.srv.Advance(11 * time.Minute)
	if status, _ := c.set("alice", setBody(c.srv.ClientID(), "Busy", "InACall", "PT1H")); status != 401 {
		t.Errorf("set with an expired token = %d; want 401", status)
	}
}

func TestUsers(t *testing.T) {
	c := newClient(t, graphtest.WithUsers(graphtest.User{
		ID: "id-alice", UserPrincipalName: "alice@contoso.com", Mail: "alice.smith@contoso.com",
		ProxyAddresses: []string{"SMTP:alice.smith@contoso.com", "smtp:o'hara@contoso.com"},
	}))
	status, body, _ := c.do("GET", "/users/ALICE@contoso.com?$select=id", "", nil)
	if status != 200 || !strings.Contains(string(body), `"id":"id-alice"`) || strings.Contains(string(body), "mail") {
		t.Errorf("get user = %d %s; want only the id", status, body)
	}
	if status, _, _ := c.do("GET", "/users/nobody@contoso.com", "", nil); status != 404 {
		t.Errorf("get unknown user = %d; want 404", status)
	}
	list := func(filter string, eventual bool) (int, string) {
		h := http.Header{}
		if eventual {
			h.Set("ConsistencyLevel", "eventual")
		}
		q := url.Values{"$filter": {filter}, "$select": {"id"}, "$count": {"true"}}
		status, body, _ := c.do("GET", "/users?"+q.Encode(), "", h)
		return status, string(body)
	}
	lambda := "mail eq 'o''hara@contoso.com' or proxyAddresses/any(p:p eq 'smtp:o''hara@contoso.com')"
	if status, body := list(lambda, false); status != 400 || !strings.Contains(body, "Request_UnsupportedQuery") {
		t.Errorf("lambda without ConsistencyLevel = %d %s; want 400", status, body)
	}
	if status, body := list(lambda, true); status != 200 || !strings.Contains(body, `"id":"id-alice"`) || !strings.Contains(body, `"@odata.count":1`) {
		t.Errorf("lambda = %d %s; want alice", status, body)
	}
	if status, body := list("mail eq 'ALICE.SMITH@contoso.com'", false); status != 200 || !strings.Contains(body, "id-alice") {
		t.Errorf("mail filter = %d %s; want alice", status, body)
	}
	if status, body := list("mail eq 'x@y'", false); status != 200 || !strings.Contains(body, `"value":[]`) {
		t.Errorf("no match = %d %s; want an empty value", status, body)
	}
	if status, _ := list("startsWith(mail,'a')", true); status != 400 {
		t.Errorf("unsupported filter = %d; want 400", status)
	}
	calls := c.srv.CallsOp(graphtest.OpListUsers)
	if len(calls) == 0 || calls[0].User != "o'hara@contoso.com" {
		t.Errorf("listUsers call user = %+v; want the looked-up address", calls)
	}
}

func TestFaults(t *testing.T) {
	c := newClient(t)
	ok := setBody(c.srv.ClientID(), "Busy", "InACall", "PT1H")
	c.srv.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, User: "bob", Times: 2, Status: 503,
		Header: http.Header{"Retry-After": {"7"}}})
	if status, _ := c.set("alice", ok); status != 200 {
		t.Errorf("alice = %d; want 200 (fault is for bob)", status)
	}
	for i := 0; i < 2; i++ {
		if status, _ := c.set("bob", ok); status != 503 {
			t.Errorf("bob #%d = %d; want 503", i, status)
		}
	}
	if status, _ := c.set("bob", ok); status != 200 {
		t.Errorf("bob after the fault = %d; want 200", status)
	}
	calls := c.srv.CallsFor("bob")
	if len(calls) != 3 || calls[0].Fault != "status" || calls[2].Fault != "" || calls[2].Status != 200 {
		t.Errorf("bob's calls = %+v", calls)
	}

	c.srv.Inject(graphtest.Fault{Op: graphtest.OpClearPresence, Reset: true})
	if _, _, err := c.do("POST", "/users/alice/presence/clearPresence", `{"sessionId":"x"}`, nil); err == nil {
		t.Errorf("reset fault: request succeeded; want a transport error")
	}

	c.srv.Inject(graphtest.Fault{Status: 400, ContentType: "text/html", Body: "<html>nope</html>"})
	status, body, _ := c.do("GET", "/users/alice", "", nil)
	if status != 400 || string(body) != "<html>nope</html>" {
		t.Errorf("html fault = %d %s", status, body)
	}

	c.srv.Inject(graphtest.Fault{Op: graphtest.OpGetUser, Delay: 200 * time.Millisecond})
	start := time.Now()
	if status, _, _ := c.do("GET", "/users/alice", "", nil); status != 404 || time.Since(start) < 200*time.Millisecond {
		t.Errorf("delay fault = %d after %s; want 404 after 200ms", status, time.Since(start))
	}

	c.srv.Reset()
	c.srv.SetRateLimit(2, time.Minute)
	var statuses []int
	for i := 0; i < 3; i++ {
		s, _ := c.set("carol", ok)
		statuses = append(statuses, s)
	}
	if statuses[2] != 429 || statuses[0] != 200 || statuses[1] != 200 {
		t.Errorf("rate limited statuses = %v; want [200 200 429]", statuses)
	}
	last := c.srv.Calls()[2]
	if last.Fault != "rate_limit" {
		t.Errorf("third call fault = %q; want rate_limit", last.Fault)
	}
	c.srv.Advance(time.Minute)
	if s, _ := c.set("carol", ok); s != 200 {
		t.Errorf("after the window = %d; want 200", s)
	}
}

func TestWaitFor(t *testing.T) {
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan graphtest.Call, 1)
	go func() {
		call, err := c.srv.WaitFor(ctx, graphtest.Op(graphtest.OpSetPresence, "dave"))
		if err != nil {
			t.Error(err)
		}
		done <- call
	}()
	c.set("erin", setBody(c.srv.ClientID(), "Busy", "InACall", "PT1H"))
	c.set("dave", setBody(c.srv.ClientID(), "Busy", "InAConferenceCall", "PT1H"))
	if call := <-done; call.User != "dave" || call.Activity != "InAConferenceCall" {
		t.Errorf("WaitFor = %+v; want dave's call", call)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := c.srv.WaitFor(short, graphtest.Op(graphtest.OpClearPresence, "")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor with no such call = %v; want deadline exceeded", err)
	}
}

func TestParseISODuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"PT5M", 5 * time.Minute, false},
		{"PT1H30M", 90 * time.Minute, false},
		{"PT4H", 4 * time.Hour, false},
		{"PT0.5S", 500 * time.Millisecond, false},
		{"P1D", 24 * time.Hour, false},
		{"P1DT1H", 25 * time.Hour, false},
		{"P1W", 7 * 24 * time.Hour, false},
		{"P1M", 0, true},
		{"PT", 0, true},
		{"P", 0, true},
		{"1h", 0, true},
		{"PT5", 0, true},
		{"PTM", 0, true},
		{"PT1H1H1X", 0, true},
	}
	for _, tt := range tests {
		got, err := graphtest.ParseISODuration(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseISODuration(%q) = %s, %v; want %s (error %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestConfig(t *testing.T) {
	srv := graphtest.NewServer(t)
	cfg := srv.Config()
	if cfg.Endpoint != srv.URL()+"/v1.0" || cfg.AuthorityHost != srv.URL()+"/" || cfg.TenantID != srv.TenantID() ||
		cfg.ClientID != srv.ClientID() || string(cfg.ClientSecret) != srv.ClientSecret() || cfg.Auth != "client_secret" || cfg.CAFile == "" {
		t.Errorf("Config = %+v", cfg)
	}
	if cc := srv.CertificateConfig(); cc.Auth != "client_certificate" || cc.CertificateFile == "" || cc.ClientSecret != "" {
		t.Errorf("CertificateConfig = %+v", cc)
	}
}
