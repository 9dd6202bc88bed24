package selfservice_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/selfservice"
)

const (
	aliceOID = "6f1c2d3e-0000-4000-8000-0000000a11ce"
	aliceUPN = "alice@contoso.com"
	// otherTenant is another organisation's tenant, whose tokens Entra
	// signs with the same keys.
	otherTenant = "0b0b0b0b-0000-4000-8000-0000000000ff"
)

// directory is a Directory over a map of enabled people (oid → UPN).
type directory struct {
	mu     sync.Mutex
	people map[string]string
	err    error
}

func (d *directory) Known(_ context.Context, oid string) (string, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return "", false, d.err
	}
	upn, ok := d.people[oid]
	return upn, ok, nil
}

func (d *directory) remove(oid string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.people, oid)
}

// people is a People answering a fixed view per person, which Pause and
// Resume change.
type people struct {
	mu    sync.Mutex
	views map[string]selfservice.View
	err   error // what Pause and Resume answer
}

func newPeople(views map[string]selfservice.View) *people {
	if views == nil {
		views = map[string]selfservice.View{}
	}
	return &people{views: views}
}

func (p *people) View(_ context.Context, oid string) (selfservice.View, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.views[oid]
	if !ok {
		return selfservice.View{}, errors.New("no such person")
	}
	return v, nil
}

func (p *people) Pause(_ context.Context, oid string, until time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	v := p.views[oid]
	v.Paused, v.PausedUntil = true, until
	p.views[oid] = v
	return nil
}

func (p *people) Resume(_ context.Context, oid string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	v := p.views[oid]
	v.Paused, v.PausedUntil = false, time.Time{}
	p.views[oid] = v
	return nil
}

func (p *people) view(oid string) selfservice.View {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.views[oid]
}

// env is a self-service listener on loopback http, signing in against the
// fake Entra.
type env struct {
	fake   *graphtest.Server
	srv    *httptest.Server
	dir    *directory
	people *people
	now    *clock
}

type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// soon is a span of Alice's in the timeline's window whenever the tests
// run (the listener's clock is the wall clock, moved on by some tests).
var soon = time.Now().Add(3 * time.Hour).Truncate(time.Minute)

var aliceView = selfservice.View{
	Availability: "Busy",
	Activity:     "InAConferenceCall",
	Spans: []selfservice.Span{{
		Start: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
		End:   time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC),
		Why:   "Weekly sync (source zoom-sales)",
	}, {
		Start: soon,
		End:   soon.Add(90 * time.Minute),
		Why:   "Design <review> (source google-team)",
	}},
}

func newEnv(t *testing.T) *env { return newEnvTenant(t, "") }

// newEnvTenant configures the tenant as tenant (default: the fake's id).
func newEnvTenant(t *testing.T, tenant string, opts ...graphtest.Option) *env {
	t.Helper()
	return newEnvWith(t, tenant, nil, nil, opts...)
}

// newEnvWith is newEnvTenant with people other than the default (nil:
// newPeople) and edit changing the listener's Config before New (nil:
// none): the application's secret is the fake's until edit says otherwise.
func newEnvWith(t *testing.T, tenant string, people selfservice.People, edit func(*graphtest.Server, *selfservice.Config), opts ...graphtest.Option) *env {
	t.Helper()
	e := &env{
		fake:   graphtest.NewServer(t, opts...),
		dir:    &directory{people: map[string]string{aliceOID: aliceUPN}},
		people: newPeople(map[string]selfservice.View{aliceOID: aliceView}),
		now:    &clock{},
	}
	if tenant == "" {
		tenant = e.fake.TenantID()
	}
	if people == nil {
		people = e.people
	}
	var h http.Handler
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)
	cfg := selfservice.Config{
		URL:          e.srv.URL,
		Authority:    e.fake.AuthorityHost(),
		TenantID:     tenant,
		ClientID:     e.fake.ClientID(),
		ClientSecret: e.fake.ClientSecret(),
		CookieKey:    []byte("0123456789abcdef0123456789abcdef"),
		HTTPClient:   e.fake.HTTPClient(),
		Now:          e.now.Now,
	}
	if edit != nil {
		edit(e.fake, &cfg)
	}
	s, err := selfservice.New(cfg, e.dir, people, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h = s
	if got, want := s.RedirectURI(), e.srv.URL+"/auth/callback"; got != want {
		t.Fatalf("RedirectURI() = %q; want %q", got, want)
	}
	e.fake.AddRedirectURI(s.RedirectURI())
	e.fake.SignInAs(aliceOID, aliceUPN, e.fake.TenantID())
	return e
}

// browser is a cookie-keeping client that follows no redirect, so that
// each step of the sign-in can be looked at.
type browser struct {
	t      *testing.T
	client *http.Client
	jar    http.CookieJar
}

func (e *env) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{
		Transport:     e.fake.HTTPClient().Transport,
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &browser{t: t, client: c, jar: jar}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) answer {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(body)}
}

func (b *browser) get(u string) answer {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// post sends a form with the Origin header origin ("" for none).
func (b *browser) post(u, origin string, form url.Values) answer {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return b.do(req)
}

// toAuthority opens / and returns the authorize URL it is sent to.
func (e *env) toAuthority(b *browser) *url.URL {
	b.t.Helper()
	a := b.get(e.srv.URL + "/")
	if a.status != http.StatusFound && a.status != http.StatusSeeOther {
		b.t.Fatalf("GET / without a session = %d; want a redirect to the authority\n%s", a.status, a.body)
	}
	u, err := url.Parse(a.header.Get("Location"))
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

// callbackURL lets the fake authority answer the authorize request and
// returns the callback URL it redirects to.
func (e *env) callbackURL(b *browser, authorize *url.URL) *url.URL {
	b.t.Helper()
	a := b.get(authorize.String())
	if a.status != http.StatusFound {
		b.t.Fatalf("authorize = %d; want 302\n%s", a.status, a.body)
	}
	u, err := url.Parse(a.header.Get("Location"))
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

// signIn runs the whole flow and returns the person's page.
func (e *env) signIn(b *browser) answer {
	b.t.Helper()
	cb := e.callbackURL(b, e.toAuthority(b))
	a := b.get(cb.String())
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		b.t.Fatalf("callback = %d (Location %q); want 303 to /\n%s", a.status, a.header.Get("Location"), a.body)
	}
	return b.get(e.srv.URL + "/")
}

func (b *browser) cookie(base, name string) *http.Cookie {
	u, _ := url.Parse(base)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// csrfOf returns the CSRF token of the page's sign-out form.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	const marker = `name="csrf" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		t.Fatalf("no csrf field in the page:\n%s", page)
	}
	rest := page[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

func wantPage(t *testing.T, what string, a answer, status int, text string) {
	t.Helper()
	if a.status != status || !strings.Contains(a.body, text) {
		t.Errorf("%s = %d; want %d with %q\n%s", what, a.status, status, text, a.body)
	}
}

func TestSignIn(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)

	authz := e.toAuthority(b)
	wantPrefix := e.fake.AuthorityHost() + e.fake.TenantID() + "/oauth2/v2.0/authorize"
	if got := authz.Scheme + "://" + authz.Host + authz.Path; got != wantPrefix {
		t.Errorf("GET / redirects to %s; want %s", got, wantPrefix)
	}
	q := authz.Query()
	for k, want := range map[string]string{
		"client_id":             e.fake.ClientID(),
		"response_type":         "code",
		"redirect_uri":          e.srv.URL + "/auth/callback",
		"code_challenge_method": "S256",
		"scope":                 "openid profile",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("authorize %s = %q; want %q", k, got, want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(k)) < 43 {
			t.Errorf("authorize %s = %q; want 32 random bytes or more", k, q.Get(k))
		}
	}

	a := b.get(e.callbackURL(b, authz).String())
	if a.status != http.StatusSeeOther {
		t.Fatalf("callback = %d; want 303\n%s", a.status, a.body)
	}
	var sc *http.Cookie
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == "calpresence_session" {
			sc = c
		}
	}
	if sc == nil {
		t.Fatalf("callback set no session cookie: %v", a.header["Set-Cookie"])
	}
	if !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Secure || sc.MaxAge != 8*3600 || sc.Path != "/" {
		t.Errorf("session cookie = %+v; want HttpOnly, SameSite=Lax, not Secure (http on loopback), Max-Age 8h, Path /", sc)
	}
	if strings.Contains(sc.Value, aliceOID) || strings.Contains(sc.Value, aliceUPN) {
		t.Errorf("session cookie shows its content: %s", sc.Value)
	}

	page := b.get(e.srv.URL + "/")
	wantPage(t, "GET / signed in", page, http.StatusOK, aliceUPN)
	for _, want := range []string{aliceOID, "Busy / InAConferenceCall", "Mon 2 Mar 09:00", "Weekly sync (source zoom-sales)"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the page does not show %q:\n%s", want, page.body)
		}
	}
	// The timeline draws the span in its window (the other is long past),
	// labelled as the list says it, which is its text equivalent.
	for _, want := range []string{
		`<svg xmlns="http://www.w3.org/2000/svg" width="100%"`, `aria-details="spans"`,
		`data-start="` + soon.UTC().Format(time.RFC3339) + `" data-end="` + soon.Add(90*time.Minute).UTC().Format(time.RFC3339) + `"`,
		`>Design &lt;review&gt; (source google-team)</text>`,
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the page's timeline lacks %s:\n%s", want, page.body)
		}
	}
	if n := strings.Count(page.body, `class="bar"`); n != 1 {
		t.Errorf("the timeline has %d bars; want 1 (the span in its window)", n)
	}
	if strings.Contains(page.body, "style=") || strings.Contains(page.body, "<script") {
		t.Errorf("the page has a style attribute or a script, which its CSP forbids:\n%s", page.body)
	}
	csp := page.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "style-src 'sha256-", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy = %q; want %q in it", csp, want)
		}
	}
	if page.header.Get("Referrer-Policy") != "same-origin" || page.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Referrer-Policy %q, Cache-Control %q; want same-origin, no-store", page.header.Get("Referrer-Policy"), page.header.Get("Cache-Control"))
	}

	// Token requests carried the PKCE verifier (the fake checks it
	// against the challenge) and the code once.
	var grants int
	for _, c := range e.fake.CallsOp(graphtest.OpToken) {
		if c.Query.Get("grant_type") == "authorization_code" {
			grants++
			if c.Query.Get("code_verifier") == "" {
				t.Errorf("token request without code_verifier: %v", c.Query)
			}
		}
	}
	if grants != 1 {
		t.Errorf("%d authorization_code redemptions; want 1", grants)
	}

	// Sign out: the session ends, / goes back to the authority.
	out := b.post(e.srv.URL+"/auth/signout", e.srv.URL, url.Values{"csrf": {csrfOf(t, page.body)}})
	wantPage(t, "POST /auth/signout", out, http.StatusOK, "You are signed out")
	if a := b.get(e.srv.URL + "/"); a.status != http.StatusFound {
		t.Errorf("GET / after sign-out = %d; want 302 to the authority", a.status)
	}
}

// graph.tenant_id may name the tenant by a domain: discovery then answers
// the tenant's GUID issuer, which the ID token must carry, and another
// tenant's token is still refused.
func TestTenantByDomain(t *testing.T) {
	e := newEnvTenant(t, "contoso.onmicrosoft.com", graphtest.WithTenantDomain("contoso.onmicrosoft.com"))
	b := e.browser(t)
	authz := e.toAuthority(b)
	if want := "/" + e.fake.TenantID() + "/oauth2/v2.0/authorize"; authz.Path != want {
		t.Errorf("authorize path = %s; want %s (the endpoint discovery names)", authz.Path, want)
	}
	cb := e.callbackURL(b, authz)
	if a := b.get(cb.String()); a.status != http.StatusSeeOther {
		t.Fatalf("callback = %d; want 303\n%s", a.status, a.body)
	}
	wantPage(t, "GET / signed in", b.get(e.srv.URL+"/"), http.StatusOK, aliceUPN)

	e.fake.SignInAs(aliceOID, "alice@fabrikam.example", otherTenant)
	b = e.browser(t)
	wantPage(t, "callback with another tenant's token", b.get(e.callbackURL(b, e.toAuthority(b)).String()),
		http.StatusForbidden, "this account belongs to another organisation")
}

// Every way a sign-in is refused, each with its status and the page's
// explanation.
func TestSignInRefused(t *testing.T) {
	t.Run("forged state", func(t *testing.T) {
		e := newEnv(t)
		b := e.browser(t)
		cb := e.callbackURL(b, e.toAuthority(b))
		q := cb.Query()
		q.Set("state", "forged-state-0123456789abcdefghijklmnopqrstuvwxyz")
		cb.RawQuery = q.Encode()
		wantPage(t, "callback with a forged state", b.get(cb.String()), http.StatusBadRequest, "this sign-in was not started in this browser")
	})
	t.Run("state issued to another browser", func(t *testing.T) {
		e := newEnv(t)
		victim := e.browser(t)
		cb := e.callbackURL(victim, e.toAuthority(victim))
		// An attacker's callback URL opened in someone else's browser.
		wantPage(t, "callback in another browser", e.browser(t).get(cb.String()), http.StatusBadRequest, "this sign-in was not started in this browser")
		if n := len(e.fake.CallsOp(graphtest.OpToken)); n != 0 {
			t.Errorf("%d token requests; want none (the state is checked first)", n)
		}
	})
	t.Run("sign-in older than 10 minutes", func(t *testing.T) {
		e := newEnv(t)
		b := e.browser(t)
		cb := e.callbackURL(b, e.toAuthority(b))
		e.now.Advance(11 * time.Minute)
		wantPage(t, "callback after 11 minutes", b.get(cb.String()), http.StatusBadRequest, "this sign-in was not started in this browser")
	})
	t.Run("replayed code", func(t *testing.T) {
		e := newEnv(t)
		b := e.browser(t)
		authz := e.toAuthority(b)
		login := b.cookie(e.srv.URL, "calpresence_login_"+authz.Query().Get("state")[:12])
		if login == nil {
			t.Fatal("no login cookie after GET /")
		}
		cb := e.callbackURL(b, authz)
		if a := b.get(cb.String()); a.status != http.StatusSeeOther {
			t.Fatalf("first callback = %d; want 303", a.status)
		}
		// The same answer again, with the login cookie replayed too.
		replay := e.browser(t)
		u, _ := url.Parse(e.srv.URL)
		replay.jar.SetCookies(u, []*http.Cookie{login})
		wantPage(t, "replayed callback", replay.get(cb.String()), http.StatusBadRequest, "this sign-in code was already used or has expired")
	})
	t.Run("wrong nonce", func(t *testing.T) {
		e := newEnv(t)
		e.fake.SetIDTokenFault(graphtest.IDTokenFault{Nonce: "a-nonce-this-browser-never-sent"})
		b := e.browser(t)
		wantPage(t, "callback with another nonce", b.get(e.callbackURL(b, e.toAuthority(b)).String()),
			http.StatusBadRequest, "the sign-in answer was not meant for this request")
	})
	t.Run("other tenant", func(t *testing.T) {
		e := newEnv(t)
		e.fake.SignInAs(aliceOID, "alice@fabrikam.example", otherTenant)
		b := e.browser(t)
		wantPage(t, "callback with another tenant's token", b.get(e.callbackURL(b, e.toAuthority(b)).String()),
			http.StatusForbidden, "this account belongs to another organisation")
	})
	t.Run("expired token", func(t *testing.T) {
		e := newEnv(t)
		e.fake.SetIDTokenFault(graphtest.IDTokenFault{Expired: true})
		b := e.browser(t)
		wantPage(t, "callback with an expired token", b.get(e.callbackURL(b, e.toAuthority(b)).String()),
			http.StatusBadRequest, "the sign-in token has expired")
	})
	t.Run("wrong audience", func(t *testing.T) {
		e := newEnv(t)
		e.fake.SetIDTokenFault(graphtest.IDTokenFault{Audience: "another-application"})
		b := e.browser(t)
		wantPage(t, "callback with a token for another app", b.get(e.callbackURL(b, e.toAuthority(b)).String()),
			http.StatusBadRequest, "the sign-in token is not valid")
	})
	t.Run("unknown person", func(t *testing.T) {
		e := newEnv(t)
		e.fake.SignInAs("6f1c2d3e-0000-4000-8000-00000000b0b0", "bob@contoso.com", e.fake.TenantID())
		b := e.browser(t)
		wantPage(t, "callback for a person the directory does not know", b.get(e.callbackURL(b, e.toAuthority(b)).String()),
			http.StatusForbidden, "your account is unknown or disabled")
		if b.cookie(e.srv.URL, "calpresence_session") != nil {
			t.Error("an unknown person got a session cookie")
		}
	})
	t.Run("disabled after sign-in", func(t *testing.T) {
		e := newEnv(t)
		b := e.browser(t)
		e.signIn(b)
		e.dir.remove(aliceOID)
		wantPage(t, "GET / once disabled", b.get(e.srv.URL+"/"), http.StatusForbidden, "your account is unknown or disabled")
	})
	t.Run("authority error", func(t *testing.T) {
		e := newEnv(t)
		b := e.browser(t)
		authz := e.toAuthority(b)
		cb, _ := url.Parse(e.srv.URL + "/auth/callback?" + url.Values{
			"state": {authz.Query().Get("state")}, "error": {"access_denied"}, "error_description": {"AADSTS65004: User declined to consent."},
		}.Encode())
		wantPage(t, "callback with an error", b.get(cb.String()), http.StatusForbidden, "User declined to consent")
	})
}

// The session cookie: tampering, expiry, and what every POST needs.
func TestSession(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	page := e.signIn(b)
	wantPage(t, "GET / signed in", page, http.StatusOK, aliceUPN)
	csrf := csrfOf(t, page.body)
	good := b.cookie(e.srv.URL, "calpresence_session")
	u, _ := url.Parse(e.srv.URL)

	t.Run("tampered cookie", func(t *testing.T) {
		tb := e.browser(t)
		v := []byte(good.Value)
		v[len(v)/2] ^= 1
		tb.jar.SetCookies(u, []*http.Cookie{{Name: good.Name, Value: string(v)}})
		a := tb.get(e.srv.URL + "/")
		if a.status != http.StatusFound || !strings.HasPrefix(a.header.Get("Location"), e.fake.AuthorityHost()) {
			t.Errorf("GET / with a tampered cookie = %d (Location %q); want 302 to the authority", a.status, a.header.Get("Location"))
		}
		wantPage(t, "POST with a tampered cookie", tb.post(e.srv.URL+"/auth/signout", e.srv.URL, url.Values{"csrf": {csrf}}),
			http.StatusForbidden, "you are not signed in")
	})
	t.Run("missing CSRF", func(t *testing.T) {
		wantPage(t, "POST without csrf", b.post(e.srv.URL+"/auth/signout", e.srv.URL, nil),
			http.StatusForbidden, "the form is stale or not from this page")
		wantPage(t, "POST with a wrong csrf", b.post(e.srv.URL+"/auth/signout", e.srv.URL, url.Values{"csrf": {csrf + "x"}}),
			http.StatusForbidden, "the form is stale or not from this page")
	})
	t.Run("cross-origin POST", func(t *testing.T) {
		wantPage(t, "POST from another site", b.post(e.srv.URL+"/auth/signout", "https://evil.example", url.Values{"csrf": {csrf}}),
			http.StatusForbidden, "this request came from another site")
		wantPage(t, "POST without Origin", b.post(e.srv.URL+"/auth/signout", "", url.Values{"csrf": {csrf}}),
			http.StatusForbidden, "this request came from another site")
	})
	t.Run("still signed in", func(t *testing.T) {
		wantPage(t, "GET / after the refusals", b.get(e.srv.URL+"/"), http.StatusOK, aliceUPN)
	})
	t.Run("expired after 8h", func(t *testing.T) {
		e.now.Advance(8*time.Hour + time.Minute)
		if a := b.get(e.srv.URL + "/"); a.status != http.StatusFound {
			t.Errorf("GET / 8h after sign-in = %d; want 302 to the authority", a.status)
		}
	})
}

// A page for a person whose view the worker cannot produce still shows
// who they are.
func TestViewUnavailable(t *testing.T) {
	e := newEnv(t)
	e.dir.people["6f1c2d3e-0000-4000-8000-0000000ca201"] = "carol@contoso.com"
	e.fake.SignInAs("6f1c2d3e-0000-4000-8000-0000000ca201", "carol@contoso.com", e.fake.TenantID())
	b := e.browser(t)
	page := e.signIn(b)
	wantPage(t, "GET / without a view", page, http.StatusOK, "What the worker knows about you is unavailable right now.")
	if !strings.Contains(page.body, "carol@contoso.com") {
		t.Errorf("the page does not name carol:\n%s", page.body)
	}
}

// Two sign-ins started in two tabs both complete.
func TestTwoTabs(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	first, second := e.toAuthority(b), e.toAuthority(b)
	cb1, cb2 := e.callbackURL(b, first), e.callbackURL(b, second)
	for i, cb := range []*url.URL{cb2, cb1} {
		if a := b.get(cb.String()); a.status != http.StatusSeeOther {
			t.Errorf("callback %d = %d; want 303\n%s", i, a.status, a.body)
		}
	}
}

func TestNewRefusesShortKey(t *testing.T) {
	_, err := selfservice.New(selfservice.Config{URL: "https://presence.contoso.com", Authority: "https://login.microsoftonline.com/",
		TenantID: "t", ClientID: "c", ClientSecret: "s", CookieKey: []byte("short")}, &directory{}, newPeople(nil), nil)
	if err == nil || !strings.Contains(err.Error(), "want at least 32") {
		t.Errorf("New with a 5-byte key = %v; want an error asking for 32 bytes", err)
	}
}

// With an https url the cookies are Secure and carry the __Host- prefix.
func TestSecureCookies(t *testing.T) {
	fake := graphtest.NewServer(t)
	s, err := selfservice.New(selfservice.Config{
		URL: "https://presence.contoso.com", Authority: fake.AuthorityHost(), TenantID: fake.TenantID(),
		ClientID: fake.ClientID(), ClientSecret: fake.ClientSecret(),
		CookieKey: []byte("0123456789abcdef0123456789abcdef"), HTTPClient: fake.HTTPClient(),
	}, &directory{}, newPeople(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://presence.contoso.com/", nil))
	if rec.Code != http.StatusFound {
		t.Fatalf("GET / = %d; want 302", rec.Code)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || !strings.HasPrefix(cookies[0].Name, "__Host-calpresence_login_") || !cookies[0].Secure ||
		!cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteLaxMode {
		t.Errorf("GET / set %v; want one Secure, HttpOnly, SameSite=Lax __Host-calpresence_login_… cookie", rec.Header()["Set-Cookie"])
	}
	if got := rec.Header().Get("Location"); !strings.Contains(got, url.QueryEscape("https://presence.contoso.com/auth/callback")) {
		t.Errorf("Location %s; want the redirect URI https://presence.contoso.com/auth/callback in it", got)
	}
}
