package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
)

// freeAddr returns a loopback address with a port free right now: the
// self-service URL must name the port before the listener binds it.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// selfserviceDaemon runs the daemon (bbolt state, the fake Graph and
// Entra, alice's and bob's feeds) with the self-service listener on, and
// returns its URL.
func selfserviceDaemon(t *testing.T, g *graphtest.Server, feeds *testutil.Feeds) (*App, string) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "cookie")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfg := config.Default()
	gc := g.Config()
	cfg.Graph.TenantID, cfg.Graph.ClientID, cfg.Graph.ClientSecret = gc.TenantID, gc.ClientID, gc.ClientSecret
	cfg.Graph.Endpoint, cfg.Graph.AuthorityHost, cfg.Graph.CAFile = gc.Endpoint, gc.AuthorityHost, gc.CAFile
	cfg.Graph.ReadbackInterval = 0
	cfg.State.Path = filepath.Join(dir, "state.db")
	cfg.Server.Listen = ""
	cfg.Selfservice.Listen, cfg.Selfservice.URL, cfg.Selfservice.CookieKeyFile = addr, "http://"+addr, key
	cfg.Sources = []config.Source{
		{Name: "alice", URL: "https://feeds.example.test/alice.ics", Users: []string{"alice@contoso.com"}, PollInterval: time.Minute},
		{Name: "bob", URL: "https://feeds.example.test/bob.ics", Users: []string{"bob@contoso.com"}, PollInterval: time.Minute},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.LogBuffer{}
	a, err := New(context.Background(), cfg, WithLogger(slog.New(slog.NewJSONHandler(logs, nil))),
		WithRegistry(prometheus.NewRegistry()), WithFetcher(feeds))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := a.Wait(); err != nil {
			t.Errorf("Wait = %v; want nil", err)
		}
		a.Close()
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	g.AddRedirectURI(cfg.Selfservice.URL + "/auth/callback")
	return a, cfg.Selfservice.URL
}

// signIn signs in at the page url as the person the fake Entra signs in
// now, following each redirect, and returns the final page's status and
// body.
func signIn(t *testing.T, g *graphtest.Server, url string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: g.HTTPClient().Transport, Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.Get(url + "/")
	if err != nil {
		t.Fatalf("GET / (through the sign-in): %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestSelfservicePage: the daemon serves the people's page; a person who
// signs in sees their own meetings and not another person's, and someone
// the worker does not know is refused.
func TestSelfservicePage(t *testing.T) {
	g := graphtest.NewServer(t, graphtest.WithUsers(
		graphtest.User{ID: aliceID, UserPrincipalName: "alice@contoso.com", Mail: "alice@contoso.com"},
		graphtest.User{ID: bobID, UserPrincipalName: "bob@contoso.com", Mail: "bob@contoso.com"}))
	now := time.Now().Truncate(time.Second)
	a, url := selfserviceDaemon(t, g, twoFeeds(
		meeting("alice-standup", now.Add(time.Hour), now.Add(2*time.Hour)),
		meeting("bob-interview", now.Add(3*time.Hour), now.Add(4*time.Hour))))
	if !testutil.WaitUntil(20*time.Second, func() bool {
		eng := a.Engine()
		if eng == nil {
			return false
		}
		_, alice := eng.Known(aliceID)
		_, bob := eng.Known(bobID)
		return alice && bob && len(eng.Person(aliceID, time.Now()).Spans) > 0
	}) {
		t.Fatal("alice and bob not resolved, or alice's meeting not read, within 20s")
	}

	g.SignInAs(aliceID, "alice@contoso.com", g.TenantID())
	status, page := signIn(t, g, url)
	if status != http.StatusOK || !strings.Contains(page, "alice-standup (source alice)") || !strings.Contains(page, `id="upn">alice@contoso.com`) {
		t.Errorf("alice's page = %d; want 200 with her meeting alice-standup from source alice\n%s", status, page)
	}
	if strings.Contains(page, "bob") {
		t.Errorf("alice's page names bob or his meeting:\n%s", page)
	}

	g.SignInAs(bobID, "bob@contoso.com", g.TenantID())
	if status, page := signIn(t, g, url); status != http.StatusOK || !strings.Contains(page, "bob-interview") || strings.Contains(page, "alice") {
		t.Errorf("bob's page = %d; want 200 with his meeting and nothing of alice's\n%s", status, page)
	}

	const carolID = "00000000-0000-4000-8000-0000000ca201"
	g.SignInAs(carolID, "carol@contoso.com", g.TenantID())
	if status, page := signIn(t, g, url); status != http.StatusForbidden || !strings.Contains(page, "unknown or disabled") {
		t.Errorf("carol's page (no feed names her) = %d; want 403 unknown or disabled\n%s", status, page)
	}
}
