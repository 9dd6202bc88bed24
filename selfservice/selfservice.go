// Package selfservice is the people's listener: each person signs in with
// their Entra ID account and sees their own page (docs/selfservice.md).
//
// Sign-in is the OpenID Connect authorization code flow with PKCE (S256),
// state and nonce, through github.com/coreos/go-oidc/v3 and
// golang.org/x/oauth2: the ID token's signature (against the tenant's
// published keys), issuer, audience and expiry are checked by go-oidc, its
// nonce and tid here; the person is its oid claim, the object id that keys
// presence sessions. The code exchange authenticates the application with
// its client secret, or with a client assertion signed by its certificate's
// key (go-jose). The session is a cookie signed and encrypted with
// gorilla/securecookie under keys derived from selfservice.cookie_key_file.
// Every POST needs the session's CSRF token and a same-origin Origin.
//
// The package declares what it needs from the rest of the worker and the
// app wires it: Directory (is this person known and enabled? backed by
// Graph) and People (what to show a person, backed by the engine).
package selfservice

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/securecookie"
)

// Directory answers whether a signed-in person may use the page: known in
// the tenant and not disabled. The app implements it with Graph (user
// lookup by object id, accountEnabled).
type Directory interface {
	// Known returns the person's user principal name and true when oid is
	// an enabled user of the tenant; false (and no error) when the user is
	// unknown or disabled. An error means the directory could not be asked.
	Known(ctx context.Context, oid string) (upn string, ok bool, err error)
}

// People is what the worker knows about a person, for their own page, and
// what the person may change of their own presence. The engine implements
// it; with selfservice.feeds it implements Feeds too.
type People interface {
	// View returns what the page shows the person with object id oid.
	View(ctx context.Context, oid string) (View, error)
	// Pause records, durably, that the person is paused until until
	// (zero: until they resume): cleared at once, set for nothing.
	Pause(ctx context.Context, oid string, until time.Time) error
	// Resume ends the person's pause; resuming nobody paused is no error.
	Resume(ctx context.Context, oid string) error
	// StartCall records, durably, that the person is on a call until
	// until: Busy/InACall at once, until then.
	StartCall(ctx context.Context, oid string, until time.Time) error
	// EndCall ends the person's call now; ending none is no error.
	EndCall(ctx context.Context, oid string) error
}

// View is what the page shows a person about their own presence.
type View struct {
	// Availability and Activity are what Teams shows for the person now,
	// as last read back; empty when unknown.
	Availability string
	Activity     string
	// Paused is true while the person's pause is in force, until
	// PausedUntil (zero: until they resume).
	Paused      bool
	PausedUntil time.Time
	// OnCallUntil is the end of the call the person declared ("I'm on a
	// call"); zero when none is running.
	OnCallUntil time.Time
	// Standby is true when the replica that answers stands by for the
	// one that sets presence (several replicas): it knows the person's
	// pause and call (the shared state), not their spans, read-back or
	// live signals.
	Standby bool
	// OwnStatus is true when Teams shows the person's own status, which
	// wins over the worker's until their next span.
	OwnStatus bool
	// Spans are the person's busy spans ahead, earliest first.
	Spans []Span
	// Live are the live signals about the person in force now (a call,
	// a Zoom presence), newest first.
	Live []Live
	// Feeds are the person's own feeds (selfservice.feeds), by when added.
	Feeds []Feed
}

// Live is a live signal about a person: a vendor's call or presence.
type Live struct {
	Vendor string // "zoom", "webex"
	Status string // the vendor's word: "On_Phone_Call", "connected", …
	Since  time.Time
}

// Span is a time the worker keeps a person busy, and why.
type Span struct {
	Start, End time.Time
	// Why names the meeting and where it comes from, e.g.
	// "Weekly sync (source zoom-sales)".
	Why string
}

// Config is what the self-service listener needs; the app fills it from
// config.Config (graph and selfservice blocks).
type Config struct {
	// URL is selfservice.url, scheme and host, e.g.
	// https://presence.contoso.com; the redirect URI is URL+"/auth/callback".
	URL string
	// Authority is the Entra authority host with or without a trailing
	// slash, e.g. https://login.microsoftonline.com/ (graph.authority_host,
	// or the national cloud's).
	Authority string
	// TenantID is graph.tenant_id: a GUID or a verified domain name.
	TenantID string
	// ClientID is the application (graph.client_id).
	ClientID string
	// ClientSecret (graph.client_secret), or ClientCertificate and
	// ClientKey (graph.certificate_file), is the application's credential
	// for the code exchange: set one. With a certificate the token request
	// carries a client assertion signed with ClientKey (Microsoft identity
	// platform, "certificate credentials") and no secret.
	ClientSecret      string
	ClientCertificate *x509.Certificate
	ClientKey         *rsa.PrivateKey
	// CookieKey is the content of selfservice.cookie_key_file, at least
	// MinKeyLen bytes (see ReadKey).
	CookieKey []byte
	// HTTPClient talks to the authority (discovery, keys, token); nil:
	// http.DefaultClient. It must trust graph.ca_file when one is set.
	HTTPClient *http.Client
	// Location is the zone times are shown in (default UTC).
	Location *time.Location
	// MaxCall is the longest "I'm on a call" (selfservice.max_call;
	// default 4h).
	MaxCall time.Duration
	// Feeds lets people add their own feeds (selfservice.feeds); People
	// must then implement Feeds.
	Feeds bool
	// Now is the clock for sessions and token expiry (default time.Now).
	Now func() time.Time
}

// MinKeyLen is the least number of bytes of a cookie key.
const MinKeyLen = 32

// Session and sign-in lifetimes.
const (
	// SessionLifetime is how long a sign-in lasts.
	SessionLifetime = 8 * time.Hour
	// loginLifetime bounds the round trip to the authority and back.
	loginLifetime = 10 * time.Minute
)

// ReadKey reads selfservice.cookie_key_file: at least MinKeyLen bytes,
// used as they are (config.CheckFiles checks the same at preflight).
func ReadKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cookie key: %w", err)
	}
	if len(data) < MinKeyLen {
		return nil, fmt.Errorf("read cookie key: %s holds %d bytes; want at least %d", path, len(data), MinKeyLen)
	}
	return data, nil
}

// Server serves the self-service pages. Create it with New; it is an
// http.Handler.
type Server struct {
	cfg      Config
	dir      Directory
	people   People
	logger   *slog.Logger
	mux      *http.ServeMux
	origin   string // scheme://host[:port] of URL, what Origin must say
	secure   bool   // cookies are Secure (URL is https)
	redirect string // URL + /auth/callback

	session *securecookie.SecureCookie
	login   *securecookie.SecureCookie
	pages   *template.Template

	actions actionLimiter // each person's actions a minute (actions.go)

	mu   sync.Mutex
	prov *provider // discovered on first use
}

// New returns the self-service handler. It contacts nothing: the
// authority's discovery document is fetched on the first sign-in (and again
// after a failure), so the worker starts while Entra is unreachable.
func New(cfg Config, dir Directory, people People, logger *slog.Logger) (*Server, error) {
	if dir == nil || people == nil {
		return nil, errors.New("selfservice: a Directory and People are required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("selfservice: url must be an absolute http(s) URL (got %q)", cfg.URL)
	}
	if cfg.Authority == "" || cfg.TenantID == "" || cfg.ClientID == "" {
		return nil, errors.New("selfservice: authority, tenant id and client id are required")
	}
	certificate := cfg.ClientCertificate != nil || cfg.ClientKey != nil
	switch {
	case cfg.ClientSecret == "" && !certificate:
		return nil, errors.New("selfservice: a client secret or a client certificate and key is required")
	case cfg.ClientSecret != "" && certificate:
		return nil, errors.New("selfservice: set a client secret or a client certificate, not both")
	case certificate && (cfg.ClientCertificate == nil || cfg.ClientKey == nil):
		return nil, errors.New("selfservice: a client certificate needs its private key, and a key its certificate")
	case certificate && !cfg.ClientKey.PublicKey.Equal(cfg.ClientCertificate.PublicKey):
		return nil, errors.New("selfservice: the client key does not belong to the client certificate")
	}
	if len(cfg.CookieKey) < MinKeyLen {
		return nil, fmt.Errorf("selfservice: cookie key holds %d bytes; want at least %d", len(cfg.CookieKey), MinKeyLen)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxCall < MinCallMinutes*time.Minute {
		cfg.MaxCall = 4 * time.Hour
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	origin := u.Scheme + "://" + u.Host
	s := &Server{
		cfg:      cfg,
		dir:      dir,
		people:   people,
		logger:   logger,
		origin:   origin,
		secure:   u.Scheme == "https",
		redirect: origin + "/auth/callback",
	}
	s.session, err = newCodec(cfg.CookieKey, "session", SessionLifetime)
	if err != nil {
		return nil, err
	}
	s.login, err = newCodec(cfg.CookieKey, "login", loginLifetime)
	if err != nil {
		return nil, err
	}
	s.pages = templates(cfg.Location)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /{$}", s.home)
	s.mux.HandleFunc("GET /auth/callback", s.callback)
	s.mux.HandleFunc("POST /auth/signout", s.post(s.signOut))
	s.mux.HandleFunc("POST /pause", s.post(s.limited(s.pause))) // actions.go
	s.mux.HandleFunc("POST /resume", s.post(s.limited(s.resume)))
	s.mux.HandleFunc("POST /call", s.post(s.limited(s.call)))
	s.mux.HandleFunc("POST /call/end", s.post(s.limited(s.endCall)))
	s.mux.HandleFunc("POST /feeds", s.post(s.limited(s.addFeed))) // feeds.go
	s.mux.HandleFunc("POST /feeds/delete", s.post(s.limited(s.deleteFeed)))
	return s, nil
}

// RedirectURI is the address to register in Entra (Authentication → Web →
// Redirect URIs): URL + "/auth/callback".
func (s *Server) RedirectURI() string { return s.redirect }

// ServeHTTP serves the pages, with headers that keep them to themselves:
// a strict Content-Security-Policy (no script, this page's own style
// only), no framing, no referrer to other sites (the callback URL carries
// a code), no caching (the pages show a person's own data). The referrer
// policy is same-origin rather than no-referrer: under no-referrer
// Chromium sends "Origin: null" with a form's POST, which the origin check
// must refuse.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// now is the configured clock.
func (s *Server) now() time.Time { return s.cfg.Now() }

// trimAuthority is the authority host without its trailing slash.
func (s *Server) trimAuthority() string { return strings.TrimRight(s.cfg.Authority, "/") }
