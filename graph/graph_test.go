package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/presence"
)

const (
	aliceID  = "9a1f3c2e-4b5d-4e6f-8a7b-0c1d2e3f4a5b"
	bobID    = "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809"
	aliceUPN = "alice@contoso.com"
)

var testUsers = []graphtest.User{
	{ID: aliceID, UserPrincipalName: aliceUPN, Mail: "alice.smith@contoso.com",
		ProxyAddresses: []string{"SMTP:alice.smith@contoso.com", "smtp:ally@partner.example"}},
	{ID: bobID, UserPrincipalName: "bob_partner.example#EXT#@contoso.onmicrosoft.com", Mail: "bob@partner.example"},
}

type testEnv struct {
	srv  *graphtest.Server
	c    *Client
	logs *testutil.LogBuffer
}

// newEnv starts a fake and a real client for it. edit may change the
// configuration before New.
func newEnv(t *testing.T, edit func(*config.Graph), opts ...Option) *testEnv {
	t.Helper()
	srv := graphtest.NewServer(t, graphtest.WithUsers(testUsers...))
	cfg := srv.Config()
	cfg.Timeout = 5 * time.Second
	if edit != nil {
		edit(&cfg)
	}
	logs := &testutil.LogBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]Option{WithRetry(3, 10*time.Millisecond, 5*time.Second)}, opts...)
	c, err := New(context.Background(), cfg, logger, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	t.Cleanup(func() {
		// Never log secrets or tokens.
		out := logs.String()
		if strings.Contains(out, srv.ClientSecret()) || strings.Contains(out, "graphtest.") {
			t.Errorf("log output contains a secret or token:\n%s", out)
		}
	})
	return &testEnv{srv: srv, c: c, logs: logs}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func asPresenceError(t *testing.T, err error) *presence.Error {
	t.Helper()
	var pe *presence.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *presence.Error", err, err)
	}
	return pe
}

func TestSetPresenceBody(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		exp  time.Duration
		want string
	}{
		{90 * time.Minute, "PT1H30M"},
		{4 * time.Hour, "PT4H"},
		{5 * time.Minute, "PT5M"},
		{61*time.Minute + 30*time.Second, "PT1H1M30S"},
		{time.Hour + 29*time.Minute + 59*time.Second + 900*time.Millisecond, "PT1H29M59S"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			e.srv.Reset()
			if err := e.c.SetPresence(ctxT(t), aliceID, presence.Busy, presence.ActivityInAConferenceCall, tt.exp); err != nil {
				t.Fatalf("SetPresence(%s) = %v", tt.exp, err)
			}
			calls := e.srv.CallsOp(graphtest.OpSetPresence)
			if len(calls) != 1 {
				t.Fatalf("setPresence calls = %d; want 1", len(calls))
			}
			c := calls[0]
			if c.User != aliceID || c.SessionID != e.srv.ClientID() || c.Availability != "Busy" ||
				c.Activity != "InAConferenceCall" || c.ExpirationDuration != tt.want {
				t.Errorf("setPresence call = user %q session %q %s/%s %s; want %s %s Busy/InAConferenceCall %s",
					c.User, c.SessionID, c.Availability, c.Activity, c.ExpirationDuration, aliceID, e.srv.ClientID(), tt.want)
			}
			if got := c.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q; want application/json", got)
			}
			if ua := c.Header.Get("User-Agent"); !strings.Contains(ua, "calpresence/") {
				t.Errorf("User-Agent = %q; want it to name calpresence", ua)
			}
			if c.Header.Get("Client-Request-Id") == "" || c.Header.Get("SdkVersion") == "" {
				t.Errorf("missing Graph telemetry headers: %v", c.Header)
			}
			se, ok := e.srv.Session(aliceID)
			if !ok || se.Expiration != tt.exp.Truncate(time.Second) {
				t.Errorf("Session(%s) = %+v, %v; want expiration %s", aliceID, se, ok, tt.exp.Truncate(time.Second))
			}
		})
	}
}

func TestSetPresenceRejectedLocally(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name              string
		availability, act string
		exp               time.Duration
	}{
		{"pair", presence.Busy, presence.ActivityPresenting, time.Hour},
		{"short", presence.Busy, presence.ActivityInACall, 4 * time.Minute},
		{"long", presence.Busy, presence.ActivityInACall, 4*time.Hour + time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.c.SetPresence(ctxT(t), aliceID, tt.availability, tt.act, tt.exp)
			if pe := asPresenceError(t, err); pe.Kind != presence.Permanent || pe.Op != OpSetPresence || pe.User != aliceID {
				t.Errorf("SetPresence = %+v; want Permanent setPresence for %s", pe, aliceID)
			}
		})
	}
	if n := len(e.srv.Calls()); n != 0 {
		t.Errorf("calls = %d; want none", n)
	}
}

func TestClearPresence(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	if err := e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInACall, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := e.c.ClearPresence(ctx, aliceID); err != nil {
		t.Fatalf("ClearPresence = %v; want nil", err)
	}
	c := e.srv.CallsOp(graphtest.OpClearPresence)[0]
	if c.SessionID != e.srv.ClientID() || string(c.Body) != `{"sessionId":"`+e.srv.ClientID()+`"}` {
		t.Errorf("clearPresence body = %s; want only sessionId %s", c.Body, e.srv.ClientID())
	}
	if _, ok := e.srv.Session(aliceID); ok {
		t.Errorf("session still present after clear")
	}
	err := e.c.ClearPresence(ctx, aliceID)
	pe := asPresenceError(t, err)
	if pe.Kind != presence.NotFound || pe.Status != 404 || pe.Op != OpClearPresence {
		t.Errorf("second ClearPresence = %+v; want NotFound 404 clearPresence", pe)
	}
	// A session that expired by Graph's clock is gone too.
	if err := e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInACall, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	e.srv.Advance(6 * time.Minute)
	if err := e.c.ClearPresence(ctx, aliceID); presence.KindOf(err) != presence.NotFound {
		t.Errorf("ClearPresence after expiry = %v; want NotFound", err)
	}
}

func TestRetry(t *testing.T) {
	tests := []struct {
		name       string
		fault      func(now time.Time) graphtest.Fault
		wantCalls  int
		minElapsed time.Duration
	}{
		{"429 retry-after seconds", func(time.Time) graphtest.Fault {
			return graphtest.Fault{Op: graphtest.OpSetPresence, Status: 429, Header: http.Header{"Retry-After": {"1"}}}
		}, 2, 900 * time.Millisecond},
		{"429 retry-after date", func(now time.Time) graphtest.Fault {
			return graphtest.Fault{Op: graphtest.OpSetPresence, Status: 429,
				Header: http.Header{"Retry-After": {now.Add(2 * time.Second).UTC().Format(http.TimeFormat)}}}
		}, 2, 900 * time.Millisecond},
		{"503 backoff", func(time.Time) graphtest.Fault {
			return graphtest.Fault{Op: graphtest.OpSetPresence, Status: 503, Times: 2}
		}, 3, 0},
		{"504", func(time.Time) graphtest.Fault {
			return graphtest.Fault{Op: graphtest.OpSetPresence, Status: 504}
		}, 2, 0},
		// What policy.Classify calls Retry is retried within the call:
		// the middleware and the engine agree.
		{"408", func(time.Time) graphtest.Fault {
			return graphtest.Fault{Op: graphtest.OpSetPresence, Status: 408}
		}, 2, 0},
		{"409", func(time.Time) graphtest.Fault {
			return graphtest.Fault{Op: graphtest.OpSetPresence, Status: 409}
		}, 2, 0},
		{"500", func(time.Time) graphtest.Fault {
			return graphtest.Fault{Op: graphtest.OpSetPresence, Status: 500}
		}, 2, 0},
		{"502", func(time.Time) graphtest.Fault {
			return graphtest.Fault{Op: graphtest.OpSetPresence, Status: 502}
		}, 2, 0},
		{"rate limit", nil, 2, 900 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			ctx := ctxT(t)
			if tt.fault != nil {
				e.srv.Inject(tt.fault(time.Now()))
			} else {
				// One presence call per window: the set below is the second.
				e.srv.SetRateLimit(1, time.Second)
				if err := e.c.ClearPresence(ctx, bobID); presence.KindOf(err) != presence.NotFound {
					t.Fatalf("ClearPresence = %v; want NotFound", err)
				}
			}
			start := time.Now()
			err := e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInAConferenceCall, 90*time.Minute)
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("SetPresence = %v; want success after retry", err)
			}
			calls := e.srv.CallsOp(graphtest.OpSetPresence)
			if len(calls) != tt.wantCalls {
				t.Fatalf("setPresence calls = %d; want %d", len(calls), tt.wantCalls)
			}
			for i, c := range calls {
				// The retried POST carries the original body.
				if !bytes.Equal(c.Body, calls[0].Body) || c.ExpirationDuration != "PT1H30M" {
					t.Errorf("attempt %d body = %s; want %s", i, c.Body, calls[0].Body)
				}
			}
			if elapsed < tt.minElapsed {
				t.Errorf("elapsed %s; want at least %s (Retry-After honoured)", elapsed, tt.minElapsed)
			}
		})
	}
}

func TestRetryExhausted(t *testing.T) {
	in1h := func() string { return time.Now().Add(time.Hour).UTC().Format(http.TimeFormat) }
	tests := []struct {
		name           string
		status         int
		retryAfter     string
		wantCalls      int
		wantRetryAfter time.Duration
	}{
		{"429 every time", 429, "0", 4, 0},
		{"503 every time", 503, "", 4, 0},
		{"429 longer than max delay", 429, "120", 1, 120 * time.Second},
		{"503 date far away", 503, in1h(), 1, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			f := graphtest.Fault{Op: graphtest.OpSetPresence, Status: tt.status, Times: -1}
			if tt.retryAfter != "" {
				f.Header = http.Header{"Retry-After": {tt.retryAfter}}
			}
			e.srv.Inject(f)
			err := e.c.SetPresence(ctxT(t), aliceID, presence.Busy, presence.ActivityInACall, time.Hour)
			pe := asPresenceError(t, err)
			if pe.Kind != presence.Retry || pe.Status != tt.status {
				t.Errorf("SetPresence = %+v; want Retry %d", pe, tt.status)
			}
			if d := pe.RetryAfter - tt.wantRetryAfter; d < -2*time.Second || d > 2*time.Second {
				t.Errorf("RetryAfter = %s; want about %s", pe.RetryAfter, tt.wantRetryAfter)
			}
			if n := len(e.srv.CallsOp(graphtest.OpSetPresence)); n != tt.wantCalls {
				t.Errorf("calls = %d; want %d", n, tt.wantCalls)
			}
		})
	}
}

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name        string
		fault       graphtest.Fault
		timeout     time.Duration
		wantKind    presence.Kind
		wantStatus  int
		wantCode    string
		wantMessage string // substring
	}{
		{"400 with message",
			graphtest.Fault{Status: 400, ContentType: "application/json",
				Body: `{"error":{"code":"BadRequest","message":"Presence session is invalid."}}`},
			0, presence.Permanent, 400, "BadRequest", "Presence session is invalid."},
		{"403 without message",
			graphtest.Fault{Status: 403, ContentType: "application/json", Body: `{"error":{"code":"Forbidden"}}`},
			0, presence.Permanent, 403, "Forbidden", ""},
		{"502 html",
			graphtest.Fault{Status: 502, ContentType: "text/html",
				Body: "<html><head><title>502 Bad Gateway</title><style>h1{x:y}</style></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"},
			0, presence.Retry, 502, "", "502 Bad Gateway 502 Bad Gateway nginx"},
		{"400 html without content type",
			graphtest.Fault{Status: 400, ContentType: "application/octet-stream", Body: "<!DOCTYPE html><html><body>Request &amp; denied</body></html>"},
			0, presence.Permanent, 400, "", "Request & denied"},
		{"500 empty body",
			graphtest.Fault{Status: 500, ContentType: "application/json"},
			0, presence.Retry, 500, "", "Internal Server Error"},
		{"400 broken json",
			graphtest.Fault{Status: 400, ContentType: "application/json", Body: `{"error":{"code":`},
			0, presence.Permanent, 400, "", `{"error":{"code":`},
		{"400 error is a string",
			graphtest.Fault{Status: 400, ContentType: "application/json", Body: `{"error":"invalid_request","error_description":"nope"}`},
			0, presence.Permanent, 400, "invalid_request", "nope"},
		{"409 odd json",
			graphtest.Fault{Status: 409, ContentType: "application/json", Body: `[1,2,3]`},
			0, presence.Retry, 409, "", "[1,2,3]"},
		{"connection reset",
			graphtest.Fault{Reset: true},
			0, presence.Retry, 0, "", "request failed"},
		{"slow answer",
			graphtest.Fault{Delay: 3 * time.Second},
			300 * time.Millisecond, presence.Retry, 0, "", "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *config.Graph) {
				if tt.timeout > 0 {
					c.Timeout = tt.timeout
				}
			})
			ctx := ctxT(t)
			// Get the token first, so that a timeout hits Graph, not Entra.
			if err := e.c.ClearPresence(ctx, bobID); presence.KindOf(err) != presence.NotFound {
				t.Fatalf("ClearPresence = %v; want NotFound", err)
			}
			f := tt.fault
			f.Op = graphtest.OpSetPresence
			f.Times = -1 // past the middleware's retries of a Retry
			e.srv.Inject(f)
			start := time.Now()
			err := e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInACall, time.Hour)
			pe := asPresenceError(t, err)
			if pe.Kind != tt.wantKind || pe.Status != tt.wantStatus || pe.Code != tt.wantCode ||
				!strings.Contains(pe.Message, tt.wantMessage) || pe.Op != OpSetPresence || pe.User != aliceID {
				t.Errorf("SetPresence = %#v; want kind %s status %d code %q message containing %q",
					pe, tt.wantKind, tt.wantStatus, tt.wantCode, tt.wantMessage)
			}
			if tt.wantMessage == "" && pe.Message != "" {
				t.Errorf("Message = %q; want empty", pe.Message)
			}
			if tt.timeout > 0 && time.Since(start) > 2*time.Second {
				t.Errorf("took %s; want the %s timeout to cut it short", time.Since(start), tt.timeout)
			}
			if pe.Error() == "" {
				t.Errorf("empty error text")
			}
		})
	}
}

func TestUnauthorizedRefreshesTokenOnce(t *testing.T) {
	t.Run("revoked token", func(t *testing.T) {
		e := newEnv(t, nil)
		ctx := ctxT(t)
		if err := e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInACall, time.Hour); err != nil {
			t.Fatal(err)
		}
		e.srv.RevokeTokens()
		if err := e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInACall, time.Hour); err != nil {
			t.Fatalf("SetPresence after revocation = %v; want success with a new token", err)
		}
		var statuses []int
		for _, c := range e.srv.CallsOp(graphtest.OpSetPresence) {
			statuses = append(statuses, c.Status)
		}
		if len(statuses) != 3 || statuses[0] != 200 || statuses[1] != 401 || statuses[2] != 200 {
			t.Errorf("setPresence statuses = %v; want [200 401 200]", statuses)
		}
		if n := e.srv.TokensIssued(); n != 2 {
			t.Errorf("tokens issued = %d; want 2", n)
		}
	})
	t.Run("401 every time", func(t *testing.T) {
		e := newEnv(t, nil)
		e.srv.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, Status: 401, Times: -1})
		err := e.c.SetPresence(ctxT(t), aliceID, presence.Busy, presence.ActivityInACall, time.Hour)
		pe := asPresenceError(t, err)
		if pe.Kind != presence.Unauthorized || pe.Status != 401 || pe.Code != "InvalidAuthenticationToken" {
			t.Errorf("SetPresence = %+v; want Unauthorized 401 InvalidAuthenticationToken", pe)
		}
		if n := len(e.srv.CallsOp(graphtest.OpSetPresence)); n != 2 {
			t.Errorf("setPresence calls = %d; want 2 (one retry after refresh)", n)
		}
		if n := e.srv.TokensIssued(); n != 2 {
			t.Errorf("tokens issued = %d; want 2", n)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		e := newEnv(t, func(c *config.Graph) { c.ClientSecret = "wrong" })
		err := e.c.SetPresence(ctxT(t), aliceID, presence.Busy, presence.ActivityInACall, time.Hour)
		pe := asPresenceError(t, err)
		if pe.Kind != presence.Unauthorized || pe.Code != "AuthenticationFailed" {
			t.Errorf("SetPresence = %+v; want Unauthorized AuthenticationFailed", pe)
		}
		if n := len(e.srv.CallsOp(graphtest.OpSetPresence)); n != 0 {
			t.Errorf("setPresence calls = %d; want none without a token", n)
		}
		if strings.Contains(pe.Error(), "wrong") {
			t.Errorf("error shows the secret: %v", pe)
		}
	})
}

func TestTokenRequest(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.c.SetPresence(ctxT(t), aliceID, presence.Busy, presence.ActivityInACall, time.Hour); err != nil {
		t.Fatal(err)
	}
	toks := e.srv.CallsOp(graphtest.OpToken)
	if len(toks) != 1 {
		t.Fatalf("token calls = %d; want 1", len(toks))
	}
	// MSAL adds openid, offline_access and profile.
	if got, want := toks[0].Query.Get("scope"), e.srv.URL()+"/.default"; !strings.Contains(" "+got+" ", " "+want+" ") {
		t.Errorf("scope = %q; want it to hold %q", got, want)
	}
	if got := toks[0].Query.Get("grant_type"); got != "client_credentials" {
		t.Errorf("grant_type = %q; want client_credentials", got)
	}
	for _, c := range e.srv.Calls() {
		if c.Op == graphtest.OpUnknown {
			t.Errorf("unexpected request %s %s", c.Method, c.Path)
		}
	}
}

func TestCertificateAuth(t *testing.T) {
	srv := graphtest.NewServer(t)
	cfg := srv.CertificateConfig()
	c, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	if err := c.SetPresence(ctxT(t), aliceID, presence.Busy, presence.ActivityInACall, time.Hour); err != nil {
		t.Fatalf("SetPresence with certificate = %v", err)
	}
	tok := srv.CallsOp(graphtest.OpToken)
	if len(tok) != 1 || tok[0].Query.Get("client_assertion_type") == "" || tok[0].Status != 200 {
		t.Errorf("token calls = %+v; want one client assertion answered 200", tok)
	}
}

func TestWorkloadIdentity(t *testing.T) {
	srv := graphtest.NewServer(t)
	c, err := New(context.Background(), srv.WorkloadIdentityConfig(), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	if err := c.SetPresence(ctxT(t), aliceID, presence.Busy, presence.ActivityInACall, time.Hour); err != nil {
		t.Fatalf("SetPresence with workload identity = %v", err)
	}
	tok := srv.CallsOp(graphtest.OpToken)
	if len(tok) != 1 || tok[0].Query.Get("client_assertion_type") == "" || tok[0].Status != 200 {
		t.Errorf("token calls = %+v; want one federated assertion answered 200", tok)
	}
}

func TestResolveUser(t *testing.T) {
	e := newEnv(t, nil)
	const bobUPN = "bob_partner.example#EXT#@contoso.onmicrosoft.com"
	alice, bob := presence.Person{ID: aliceID, UPN: aliceUPN}, presence.Person{ID: bobID, UPN: bobUPN}
	tests := []struct {
		user     string
		want     presence.Person
		wantKind presence.Kind // 0: success
		wantOps  []string
	}{
		{aliceUPN, alice, 0, []string{graphtest.OpGetUser}},
		{"ALICE@contoso.com", alice, 0, []string{graphtest.OpGetUser}},
		{"alice.smith@contoso.com", alice, 0, []string{graphtest.OpGetUser, graphtest.OpListUsers}},
		{"ally@partner.example", alice, 0, []string{graphtest.OpGetUser, graphtest.OpListUsers}},
		{bobUPN, bob, 0, []string{graphtest.OpGetUser}},
		{"o'brien@contoso.com", presence.Person{}, presence.NotFound, []string{graphtest.OpGetUser, graphtest.OpListUsers}},
		{"nobody", presence.Person{}, presence.NotFound, []string{graphtest.OpGetUser}},
		// An object id is looked up too: its UPN is shown in logs, and
		// a 404 says the id is gone.
		{aliceID, alice, 0, []string{graphtest.OpGetUser}},
		{strings.ToUpper(bobID), bob, 0, []string{graphtest.OpGetUser}},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			// Nothing is cached: the caller (sync's directory) owns the
			// one cache, so every call asks Graph.
			for round := 0; round < 2; round++ {
				e.srv.Reset()
				got, err := e.c.ResolveUser(ctxT(t), tt.user)
				if tt.wantKind == 0 && (err != nil || got != tt.want) {
					t.Fatalf("ResolveUser(%q) = %+v, %v; want %+v", tt.user, got, err, tt.want)
				}
				if tt.wantKind != 0 {
					pe := asPresenceError(t, err)
					if pe.Kind != tt.wantKind || pe.Op != OpResolveUser || pe.User != tt.user {
						t.Fatalf("ResolveUser(%q) = %+v; want %s", tt.user, pe, tt.wantKind)
					}
				}
				var ops []string
				for _, c := range e.srv.Calls() {
					if c.Op != graphtest.OpToken && c.Op != graphtest.OpOpenID {
						ops = append(ops, c.Op)
					}
				}
				if strings.Join(ops, ",") != strings.Join(tt.wantOps, ",") {
					t.Errorf("round %d: calls = %v; want %v", round, ops, tt.wantOps)
				}
			}
		})
	}
}

func TestResolveUserRequests(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.c.ResolveUser(ctxT(t), "ally@partner.example"); err != nil {
		t.Fatal(err)
	}
	get := e.srv.CallsOp(graphtest.OpGetUser)[0]
	if get.Path != "/v1.0/users/ally@partner.example" || get.Query.Get("$select") != "id,userPrincipalName" {
		t.Errorf("get user = %s ?%s; want /v1.0/users/ally@partner.example ?$select=id,userPrincipalName", get.Path, get.Query.Encode())
	}
	list := e.srv.CallsOp(graphtest.OpListUsers)[0]
	wantFilter := "mail eq 'ally@partner.example' or proxyAddresses/any(p:p eq 'smtp:ally@partner.example')"
	if list.Query.Get("$filter") != wantFilter || list.Query.Get("$count") != "true" ||
		list.Query.Get("$select") != "id,userPrincipalName" || list.Header.Get("ConsistencyLevel") != "eventual" || list.Status != 200 {
		t.Errorf("list users = %v ConsistencyLevel %q status %d; want filter %q, $count=true, $select=id,userPrincipalName, eventual",
			list.Query, list.Header.Get("ConsistencyLevel"), list.Status, wantFilter)
	}
}

func TestResolveUserErrorsAreNotCached(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Inject(graphtest.Fault{Op: graphtest.OpGetUser, Status: 500})
	if _, err := e.c.ResolveUser(ctxT(t), aliceUPN); presence.KindOf(err) != presence.Retry {
		t.Fatalf("ResolveUser with 500 = %v; want Retry", err)
	}
	if got, err := e.c.ResolveUser(ctxT(t), aliceUPN); err != nil || got.ID != aliceID {
		t.Fatalf("ResolveUser after 500 = %+v, %v; want %q", got, err, aliceID)
	}
}

func TestDryRun(t *testing.T) {
	srv := graphtest.NewServer(t)
	logs := &testutil.LogBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	// No tenant, no client id, no secret: the quick start has no account.
	cfg := config.Graph{DryRun: true, Endpoint: srv.GraphURL(), AuthorityHost: srv.AuthorityHost()}
	c, err := New(context.Background(), cfg, logger)
	if err != nil {
		t.Fatalf("New(dry run) = %v", err)
	}
	ctx := ctxT(t)
	if err := c.SetPresence(ctx, aliceUPN, presence.Busy, presence.ActivityInAConferenceCall, 90*time.Minute); err != nil {
		t.Errorf("SetPresence = %v", err)
	}
	if err := c.ClearPresence(ctx, aliceUPN); err != nil {
		t.Errorf("ClearPresence = %v", err)
	}
	if got, err := c.ResolveUser(ctx, "Ally@Partner.example"); err != nil || got != (presence.Person{ID: "ally@partner.example", UPN: "ally@partner.example"}) {
		t.Errorf("ResolveUser = %+v, %v; want the input, lower-cased", got, err)
	}
	// Nothing was set, so there is nothing to read back.
	if got, err := c.ReadPresences(ctx, []string{aliceID}); !errors.Is(err, ErrDryRun) || got != nil {
		t.Errorf("ReadPresences = %v, %v; want nil, ErrDryRun", got, err)
	}
	if n := len(srv.Calls()); n != 0 {
		t.Errorf("calls = %d; want none", n)
	}
	out := logs.String()
	for _, want := range []string{"user=" + aliceUPN, "availability=Busy", "activity=InAConferenceCall", "expiration=1h30m0s", "expiration_iso=PT1H30M", "clear presence"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run log lacks %q:\n%s", want, out)
		}
	}
	// Still validated locally.
	if err := c.SetPresence(ctx, aliceUPN, presence.Busy, presence.ActivityInACall, time.Minute); presence.KindOf(err) != presence.Permanent {
		t.Errorf("dry-run SetPresence(1m) = %v; want Permanent", err)
	}
}

func TestNewErrors(t *testing.T) {
	srv := graphtest.NewServer(t)
	tests := []struct {
		name string
		edit func(*config.Graph)
		want string
	}{
		{"unknown cloud", func(c *config.Graph) { c.Cloud = "mars" }, `unknown cloud "mars"`},
		{"http endpoint", func(c *config.Graph) { c.Endpoint = "http://graph.example/v1.0" }, "endpoint must be an https URL"},
		{"no secret", func(c *config.Graph) { c.ClientSecret = "" }, "set one of client_secret or client_secret_file"},
		{"missing secret file", func(c *config.Graph) { c.ClientSecret = ""; c.ClientSecretFile = "/nonexistent/secret" }, "read client_secret_file"},
		{"no client id", func(c *config.Graph) { c.ClientID = "" }, "client_id is required"},
		{"bad ca file", func(c *config.Graph) { c.CAFile = "/nonexistent/ca.pem" }, "read ca_file"},
		{"unknown auth", func(c *config.Graph) { c.Auth = "magic" }, `unknown auth "magic"`},
		{"missing certificate", func(c *config.Graph) { c.Auth = "client_certificate" }, "certificate_file is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := srv.Config()
			tt.edit(&cfg)
			_, err := New(context.Background(), cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v; want an error containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), srv.ClientSecret()) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

func TestClientSecretFile(t *testing.T) {
	e := newEnv(t, func(c *config.Graph) {
		path := t.TempDir() + "/secret"
		if err := writeFile(path, "  "+string(c.ClientSecret)+"\n"); err != nil {
			t.Fatal(err)
		}
		c.ClientSecret, c.ClientSecretFile = "", path
	})
	if err := e.c.SetPresence(ctxT(t), aliceID, presence.Busy, presence.ActivityInACall, time.Hour); err != nil {
		t.Fatalf("SetPresence with client_secret_file = %v", err)
	}
}

func TestOddSuccessBodies(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
	}{
		{"html", "text/html", "<html><body>Sign in to the proxy</body></html>"},
		{"id is a number", "application/json", `{"id":5}`},
		{"array", "application/json", `[{"id":"x"}]`},
		{"truncated", "application/json", `{"id":"9a1f`},
		{"empty", "application/json", ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.srv.Inject(graphtest.Fault{Op: graphtest.OpGetUser, Status: 200, ContentType: tt.contentType, Body: tt.body})
			id, err := e.c.ResolveUser(ctxT(t), aliceUPN)
			if err == nil {
				t.Fatalf("ResolveUser = %+v, nil; want an error", id)
			}
			if k := presence.KindOf(err); k != presence.Retry {
				t.Errorf("ResolveUser = %v (%s); want Retry", err, k)
			}
		})
	}
}

// countingPacer records what the client asks of its pacer.
type countingPacer struct {
	mu       sync.Mutex
	acquired int
	inFlight int
	pauses   []time.Duration
}

func (p *countingPacer) Acquire(ctx context.Context) (func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.acquired++
	p.inFlight++
	return func() { p.mu.Lock(); p.inFlight--; p.mu.Unlock() }, nil
}

func (p *countingPacer) Pause(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pauses = append(p.pauses, d)
}

// TestPacerSeesEveryPresenceAttempt: every request Graph's presence limit
// counts — the client's own retries included — takes a pacer slot, and a
// 429 pauses the pacer (the whole app) for its Retry-After; user lookups
// are not presence requests and are not paced.
func TestPacerSeesEveryPresenceAttempt(t *testing.T) {
	p := &countingPacer{}
	e := newEnv(t, nil, WithPacer(p))
	e.srv.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, Status: 429, Header: http.Header{"Retry-After": {"1"}}})
	e.srv.Inject(graphtest.Fault{Op: graphtest.OpClearPresence, Status: 503})
	ctx := ctxT(t)
	if err := e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInACall, time.Hour); err != nil {
		t.Fatalf("SetPresence = %v; want success after one retry", err)
	}
	if err := e.c.ClearPresence(ctx, aliceID); err != nil {
		t.Fatalf("ClearPresence = %v; want success after one retry", err)
	}
	if _, err := e.c.ResolveUser(ctx, aliceUPN); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sent := len(e.srv.CallsOp(graphtest.OpSetPresence)) + len(e.srv.CallsOp(graphtest.OpClearPresence))
	if p.acquired != 4 || sent != 4 {
		t.Errorf("pacer slots taken = %d for %d presence requests; want 4 and 4 (two answers, two retries)", p.acquired, sent)
	}
	if p.inFlight != 0 {
		t.Errorf("%d pacer slots still held; want all released", p.inFlight)
	}
	if len(p.pauses) != 1 || p.pauses[0] != time.Second {
		t.Errorf("pauses = %v; want one of 1s, for the 429 (a 503 throttles nobody)", p.pauses)
	}
}

// TestAuthenticate: a token is asked for at once, before any presence
// call, and Authenticated says whether the authority issued one.
func TestAuthenticate(t *testing.T) {
	e := newEnv(t, nil)
	if e.c.Authenticated() {
		t.Fatal("Authenticated before any token request = true")
	}
	if err := e.c.Authenticate(ctxT(t)); err != nil {
		t.Fatalf("Authenticate = %v", err)
	}
	if !e.c.Authenticated() || len(e.srv.CallsOp(graphtest.OpToken)) != 1 {
		t.Errorf("after Authenticate: Authenticated %v, %d token requests; want true and 1", e.c.Authenticated(), len(e.srv.CallsOp(graphtest.OpToken)))
	}

	bad := newEnv(t, func(c *config.Graph) { c.ClientSecret = "wrong" })
	if err := bad.c.Authenticate(ctxT(t)); err == nil || bad.c.Authenticated() {
		t.Errorf("Authenticate with a wrong secret = %v, Authenticated %v; want an error and false", err, bad.c.Authenticated())
	}
}

// TestRetryAfterObserved: a Retry-After on an answer that is retried is
// reported, with the operation, whether the client waits it out itself or
// hands it to the caller.
func TestRetryAfterObserved(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	observe := func(op string, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s %s", op, d))
	}
	e := newEnv(t, nil, WithRetryAfterObserver(observe))
	ctx := ctxT(t)
	e.srv.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, Status: 429, Header: http.Header{"Retry-After": {"0"}}})
	if err := e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInACall, time.Hour); err != nil {
		t.Fatalf("SetPresence = %v; want success after the retry", err)
	}
	// Longer than the client waits: the caller gets it, and it counts.
	e.srv.Inject(graphtest.Fault{Op: graphtest.OpClearPresence, Status: 503, Header: http.Header{"Retry-After": {"120"}}})
	if pe := asPresenceError(t, e.c.ClearPresence(ctx, aliceID)); pe.RetryAfter != 2*time.Minute {
		t.Errorf("ClearPresence RetryAfter = %s; want 2m0s", pe.RetryAfter)
	}
	// A refusal that is not retried (400 on a set) is not a wait.
	e.srv.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, Status: 400, Header: http.Header{"Retry-After": {"5"}}})
	_ = e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInACall, time.Hour)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"setPresence 0s", "clearPresence 2m0s"}; !slices.Equal(seen, want) {
		t.Errorf("observed %q; want %q", seen, want)
	}
}

// TestRefusalsGoBackToTheCaller: a 403 to a clear or a lookup is a Retry
// (policy.Classify), but for the caller, after its back-off: the client
// does not spend the budget retrying a refusal within the call. A 403 to
// a set is held (Permanent).
func TestRefusalsGoBackToTheCaller(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	e.srv.Inject(graphtest.Fault{Op: graphtest.OpClearPresence, Status: 403, Times: -1})
	if pe := asPresenceError(t, e.c.ClearPresence(ctx, aliceID)); pe.Kind != presence.Retry || pe.Status != 403 {
		t.Errorf("ClearPresence after 403 = %v (%s); want Retry 403", pe, pe.Kind)
	}
	if n := len(e.srv.CallsOp(graphtest.OpClearPresence)); n != 1 {
		t.Errorf("clearPresence calls = %d; want 1 (no retry within the call)", n)
	}
	e.srv.Inject(graphtest.Fault{Op: graphtest.OpGetUser, Status: 403, Times: -1})
	_, err := e.c.ResolveUser(ctx, "alice@contoso.com")
	if pe := asPresenceError(t, err); pe.Kind != presence.Retry || pe.Status != 403 {
		t.Errorf("ResolveUser after 403 = %v (%s); want Retry 403", pe, pe.Kind)
	}
	if n := len(e.srv.CallsOp(graphtest.OpGetUser)); n != 1 {
		t.Errorf("user lookups = %d; want 1 (no retry within the call)", n)
	}
	e.srv.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, Status: 403, Times: -1})
	if pe := asPresenceError(t, e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInACall, time.Hour)); pe.Kind != presence.Permanent {
		t.Errorf("SetPresence after 403 = %v (%s); want Permanent", pe, pe.Kind)
	}
}
