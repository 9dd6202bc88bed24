package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/state/mem"
	"github.com/calpresence/calpresence/sync/engine"
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
//
// Each of edits changes the configuration before it starts. feeds nil:
// the daemon's own fetcher.
func selfserviceDaemon(t *testing.T, g *graphtest.Server, feeds engine.Fetcher, edits ...func(*config.Config)) (*App, string) {
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
	for _, edit := range edits {
		edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.LogBuffer{}
	opts := []Option{WithLogger(slog.New(slog.NewJSONHandler(logs, nil))), WithRegistry(prometheus.NewRegistry())}
	if feeds != nil {
		opts = append(opts, WithFetcher(feeds))
	}
	a, err := New(context.Background(), cfg, opts...)
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

// aliceAndBob is the fake Entra and Graph with alice and bob in the
// tenant.
func aliceAndBob(t *testing.T) *graphtest.Server {
	return graphtest.NewServer(t, graphtest.WithUsers(
		graphtest.User{ID: aliceID, UserPrincipalName: "alice@contoso.com", Mail: "alice@contoso.com"},
		graphtest.User{ID: bobID, UserPrincipalName: "bob@contoso.com", Mail: "bob@contoso.com"}))
}

// waitKnown waits until the engine of a knows the person id (their address
// resolved), failing the test after 20 s.
func waitKnown(t *testing.T, a *App, id, name string) {
	t.Helper()
	if !testutil.WaitUntil(20*time.Second, func() bool {
		eng := a.Engine()
		if eng == nil {
			return false
		}
		_, ok := eng.Known(id)
		return ok
	}) {
		t.Fatalf("%s not resolved within 20s", name)
	}
}

// signIn signs in at the page url as the person the fake Entra signs in
// now, following each redirect, and returns the final page's status and
// body.
func signIn(t *testing.T, g *graphtest.Server, url string) (int, string) {
	t.Helper()
	status, body, _ := signInClient(t, g, url)
	return status, body
}

// signInClient is signIn, also returning the browser (its cookies).
func signInClient(t *testing.T, g *graphtest.Server, url string) (int, string, *http.Client) {
	t.Helper()
	c := testutil.Browser(g.HTTPClient().Transport)
	status, body := testutil.Get(t, c, url+"/")
	return status, body, c
}

// selfPresenceCalls are the fake's presence calls for user, "set" or "clear".
func selfPresenceCalls(g *graphtest.Server, user string) []string {
	var out []string
	for _, c := range g.PresenceCalls() {
		if c.User != user || c.Status >= 300 {
			continue
		}
		if c.Op == graphtest.OpSetPresence {
			out = append(out, "set")
		} else {
			out = append(out, "clear")
		}
	}
	return out
}

// TestSelfservicePause: alice, in a meeting now, pauses on her page: the
// daemon clears her at once and the page says she is paused; she resumes
// and is set again, while the meeting runs.
func TestSelfservicePause(t *testing.T) {
	g := aliceAndBob(t)
	now := time.Now().Truncate(time.Second)
	_, url := selfserviceDaemon(t, g, twoFeeds(
		meeting("alice-running", now.Add(-time.Minute), now.Add(time.Hour)),
		meeting("bob-later", now.Add(3*time.Hour), now.Add(4*time.Hour))))
	if !testutil.WaitUntil(20*time.Second, func() bool { return slices.Equal(selfPresenceCalls(g, aliceID), []string{"set"}) }) {
		t.Fatalf("alice's calls = %v; want a set for her running meeting", selfPresenceCalls(g, aliceID))
	}

	g.SignInAs(aliceID, "alice@contoso.com", g.TenantID())
	status, page, c := signInClient(t, g, url)
	if status != http.StatusOK || !strings.Contains(page, "Not paused") {
		t.Fatalf("alice's page = %d; want 200, not paused\n%s", status, page)
	}
	csrf := testutil.FormValue(t, page, "csrf")
	status, page = testutil.PostForm(t, c, url, "/pause", neturl.Values{"csrf": {csrf}})
	if status != http.StatusOK || !strings.Contains(page, "Paused until you resume") {
		t.Errorf("POST /pause, then the page = %d; want 200 saying paused until you resume\n%s", status, page)
	}
	if !testutil.WaitUntil(10*time.Second, func() bool { return slices.Equal(selfPresenceCalls(g, aliceID), []string{"set", "clear"}) }) {
		t.Fatalf("alice's calls after her pause = %v; want set, clear", selfPresenceCalls(g, aliceID))
	}

	status, page = testutil.PostForm(t, c, url, "/resume", neturl.Values{"csrf": {csrf}})
	if status != http.StatusOK || !strings.Contains(page, "Not paused") {
		t.Errorf("POST /resume, then the page = %d; want 200, not paused\n%s", status, page)
	}
	if !testutil.WaitUntil(10*time.Second, func() bool { return slices.Equal(selfPresenceCalls(g, aliceID), []string{"set", "clear", "set"}) }) {
		t.Fatalf("alice's calls after she resumed = %v; want set, clear, set", selfPresenceCalls(g, aliceID))
	}
	if calls := selfPresenceCalls(g, bobID); len(calls) != 0 {
		t.Errorf("bob's calls = %v; want none (his meeting is later)", calls)
	}
}

// TestSelfservicePage: the daemon serves the people's page; a person who
// signs in sees their own meetings and not another person's, and someone
// the worker does not know is refused.
func TestSelfservicePage(t *testing.T) {
	g := aliceAndBob(t)
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
		return alice && bob && len(eng.Person(t.Context(), aliceID, time.Now()).Spans) > 0
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

// TestSelfserviceCertificate: with graph.auth client_certificate, the
// daemon signs alice in with the application's certificate (Graph's
// credential file): the code exchange carries a client assertion the fake
// Entra checks, and no secret.
func TestSelfserviceCertificate(t *testing.T) {
	g := aliceAndBob(t)
	now := time.Now().Truncate(time.Second)
	a, url := selfserviceDaemon(t, g, twoFeeds(
		meeting("alice-standup", now.Add(time.Hour), now.Add(2*time.Hour)),
		meeting("bob-interview", now.Add(3*time.Hour), now.Add(4*time.Hour))), func(c *config.Config) {
		cc := g.CertificateConfig()
		c.Graph.Auth, c.Graph.ClientSecret, c.Graph.CertificateFile = cc.Auth, "", cc.CertificateFile
	})
	waitKnown(t, a, aliceID, "alice")
	g.SignInAs(aliceID, "alice@contoso.com", g.TenantID())
	if status, page := signIn(t, g, url); status != http.StatusOK || !strings.Contains(page, `id="upn">alice@contoso.com`) {
		t.Errorf("alice's page = %d; want 200, signed in\n%s", status, page)
	}
	var exchanges int
	for _, c := range g.CallsOp(graphtest.OpToken) {
		if c.Query.Get("client_assertion_type") == "" || c.Status != http.StatusOK {
			t.Errorf("token request %s %d; want a client assertion answered 200", c.Query.Get("grant_type"), c.Status)
		}
		if c.Query.Get("grant_type") == "authorization_code" {
			exchanges++
		}
	}
	if exchanges != 1 {
		t.Errorf("%d code exchanges; want 1", exchanges)
	}
}

// TestSelfserviceCall: bob, free now, says he is on a call for 30
// minutes: the daemon sets him Busy/InACall at once; he ends it early and
// is cleared at once. Minutes over selfservice.max_call are refused.
func TestSelfserviceCall(t *testing.T) {
	g := aliceAndBob(t)
	now := time.Now().Truncate(time.Second)
	a, url := selfserviceDaemon(t, g, twoFeeds(
		meeting("alice-later", now.Add(3*time.Hour), now.Add(4*time.Hour)),
		meeting("bob-later", now.Add(3*time.Hour), now.Add(4*time.Hour))))
	waitKnown(t, a, bobID, "bob")
	g.SignInAs(bobID, "bob@contoso.com", g.TenantID())
	_, page, c := signInClient(t, g, url)
	csrf := testutil.FormValue(t, page, "csrf")
	if status, page := testutil.PostForm(t, c, url, "/call", neturl.Values{"csrf": {csrf}, "minutes": {"241"}}); status != http.StatusBadRequest || !strings.Contains(page, "from 5 to 240") {
		t.Errorf("POST /call minutes=241 = %d; want 400 naming 5 to 240\n%s", status, page)
	}
	status, page := testutil.PostForm(t, c, url, "/call", neturl.Values{"csrf": {csrf}, "minutes": {"30"}})
	if status != http.StatusOK || !strings.Contains(page, `id="on-call"`) {
		t.Errorf("POST /call minutes=30, then the page = %d; want 200 saying he is on a call\n%s", status, page)
	}
	if !testutil.WaitUntil(10*time.Second, func() bool { return slices.Equal(selfPresenceCalls(g, bobID), []string{"set"}) }) {
		t.Fatalf("bob's calls = %v; want a set", selfPresenceCalls(g, bobID))
	}
	for _, call := range g.PresenceCalls() {
		if call.User == bobID && !strings.Contains(string(call.Body), `"InACall"`) {
			t.Errorf("bob's set = %s; want activity InACall", call.Body)
		}
	}
	testutil.PostForm(t, c, url, "/call/end", neturl.Values{"csrf": {csrf}})
	if !testutil.WaitUntil(10*time.Second, func() bool { return slices.Equal(selfPresenceCalls(g, bobID), []string{"set", "clear"}) }) {
		t.Fatalf("bob's calls after ending his call = %v; want set, clear", selfPresenceCalls(g, bobID))
	}
	if calls := selfPresenceCalls(g, aliceID); len(calls) != 0 {
		t.Errorf("alice's calls = %v; want none", calls)
	}
}

// TestSelfserviceWithoutEngine: with no engine running here (a standby,
// or one stopping), a pause, a resume and a call go straight into the
// shared store, where the leader's engine takes them.
func TestSelfserviceWithoutEngine(t *testing.T) {
	cfg := config.Default()
	cfg.Graph.TenantID, cfg.Graph.ClientID, cfg.Graph.ClientSecret = "contoso", "calpresence-app", "s3cr3t"
	cfg.Server.Listen = ""
	a, err := New(context.Background(), cfg, WithMemoryState(), WithPresence(newFakeGraph()), WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	p := selfPeople{a: a}
	if _, err := p.View(ctx, aliceID); err == nil {
		t.Errorf("View with no engine = nil error; want one saying there is none")
	}
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	if err := p.Pause(ctx, aliceID, until); err != nil {
		t.Fatalf("Pause = %v", err)
	}
	if err := p.StartCall(ctx, bobID, until); err != nil {
		t.Fatalf("StartCall = %v", err)
	}
	st := a.Store().(*mem.Store)
	pauses, _ := st.Pauses(ctx)
	calls, _ := st.OwnCalls(ctx)
	if len(pauses) != 1 || !pauses[aliceID].Until.Equal(until) || len(calls) != 1 || !calls[bobID].Until.Equal(until) {
		t.Errorf("stored pauses %v, calls %v; want alice paused and bob on a call until %v", pauses, calls, until)
	}
	if err := p.Resume(ctx, aliceID); err != nil {
		t.Fatalf("Resume = %v", err)
	}
	if err := p.EndCall(ctx, bobID); err != nil {
		t.Fatalf("EndCall = %v", err)
	}
	pauses, _ = st.Pauses(ctx)
	calls, _ = st.OwnCalls(ctx)
	if len(pauses)+len(calls) != 0 {
		t.Errorf("after Resume and EndCall: pauses %v, calls %v; want none", pauses, calls)
	}
}

// TestSelfserviceBadKey: a cookie key file that went short since the
// preflight stops Start with a configuration error naming it; nothing is
// left running.
func TestSelfserviceBadKey(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cookie")
	if err := os.WriteFile(key, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Graph.TenantID, cfg.Graph.ClientID, cfg.Graph.ClientSecret = "contoso", "calpresence-app", "s3cr3t"
	cfg.Server.Listen = ""
	addr := freeAddr(t)
	cfg.Selfservice.Listen, cfg.Selfservice.URL, cfg.Selfservice.CookieKeyFile = addr, "http://"+addr, key
	a, err := New(context.Background(), cfg, WithMemoryState(), WithPresence(newFakeGraph()), WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	err = a.Start(context.Background())
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "selfservice.cookie_key_file") || !strings.Contains(err.Error(), "want at least 32") {
		t.Fatalf("Start with a 5-byte cookie key = %v; want a *ConfigError naming selfservice.cookie_key_file", err)
	}
	if ln, err := net.Listen("tcp", addr); err != nil {
		t.Errorf("the self-service address is taken after Start failed: %v", err)
	} else {
		ln.Close()
	}
}
