// Package graphtest is a small fake of Microsoft Entra ID (the token
// endpoint MSAL talks to) and of the slice of Microsoft Graph that
// calpresence uses (setPresence, clearPresence, setStatusMessage,
// getPresencesByUserId, user lookup), served over TLS for tests anywhere in
// the repository.
//
// It imports only the standard library, config and presence, so tests of
// packages that do not import msgraph-sdk-go can use it cheaply.
//
// The fake is strict where Graph is strict (bearer token, sessionId equal to
// the client id, allowed availability/activity pairs, expirationDuration
// within PT5M..PT4H, ConsistencyLevel for lambda filters) and records every
// call it answers. Faults (status codes, latency, connection resets, rate
// limits for presence writes and, apart, for presence reads) are injected
// per test.
//
// What Teams shows for a person (getPresencesByUserId) is aggregated as
// Graph does it from the sessions the fake holds, the person's own
// preferred status and their status message: see Shown.
package graphtest

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
)

// Defaults for the fake tenant and application.
const (
	DefaultTenantID     = "72f988bf-0000-4000-8000-00000000c0de"
	DefaultClientID     = "22553876-f5ab-4529-bffb-cfe50aa89f87"
	DefaultClientSecret = "fake-client-secret"
	// DefaultTokenLifetime is the expires_in of issued tokens.
	DefaultTokenLifetime = time.Hour
)

// Operation names used in Call.Op and Fault.Op.
const (
	OpOpenID        = "openid"        // GET /{tenant}/v2.0/.well-known/openid-configuration
	OpToken         = "token"         // POST /{tenant}/oauth2/v2.0/token
	OpSetPresence   = "setPresence"   // POST /v1.0/users/{id}/presence/setPresence
	OpClearPresence = "clearPresence" // POST /v1.0/users/{id}/presence/clearPresence
	OpGetUser       = "getUser"       // GET /v1.0/users/{id|upn}
	OpListUsers     = "listUsers"     // GET /v1.0/users?$filter=...
	OpUnknown       = "unknown"       // anything else (answered 404)

	OpSetStatusMessage = "setStatusMessage"     // POST /v1.0/users/{id}/presence/setStatusMessage
	OpReadPresences    = "getPresencesByUserId" // POST /v1.0/communications/getPresencesByUserId
)

// User is an entry of the fake directory.
type User struct {
	ID                string   // object id (GUID)
	UserPrincipalName string   // e.g. alice@contoso.com
	Mail              string   // primary SMTP address
	ProxyAddresses    []string // e.g. "SMTP:alice@contoso.com", "smtp:ally@contoso.com"
}

// Session is an application presence session held by the fake.
type Session struct {
	User         string // the {id} of the setPresence path
	SessionID    string
	Availability string
	Activity     string
	Expiration   time.Duration
	Set          time.Time // when it was (last) set, by the fake's clock
	Expires      time.Time
}

// Call is one request the fake answered.
type Call struct {
	Time   time.Time // by the fake's clock
	Op     string    // one of the Op* constants
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	// User is the {id} of /users/{id}/... paths, the address looked up by a
	// listUsers filter, or the client id of a token request.
	User string
	// Body is the raw request body (token requests: omitted, they carry
	// secrets).
	Body []byte
	// IDs are the ids of a getPresencesByUserId body.
	IDs []string
	// Request body fields of setPresence/clearPresence.
	SessionID          string
	Availability       string
	Activity           string
	ExpirationDuration string
	// Status is the HTTP status answered; 0 when the connection was reset.
	Status int
	// Fault says how an injected fault shaped the answer: "" (none),
	// "status", "delay", "reset" or "rate_limit".
	Fault string
}

// Server is the fake Entra + Graph server. Create it with NewServer.
type Server struct {
	tb  testing.TB
	srv *httptest.Server

	tenantID      string
	clientID      string
	clientSecret  string
	tokenLifetime time.Duration
	clock         func() time.Time

	certOnce sync.Once
	cert     *clientCert
	caOnce   sync.Once
	caPath   string
	fedOnce  sync.Once
	fedPath  string
	signin   signin // OpenID Connect sign-in (signin.go)

	mu         sync.Mutex
	offset     time.Duration
	users      []User
	tokens     map[string]tokenInfo
	fedToken   string
	tokenSeq   int
	sessions   map[sessionKey]Session
	people     map[string]*person // by lower-cased {id}: what the person set themself
	calls      []Call
	counts     map[string]int // recorded calls by Op
	changed    chan struct{}  // closed and replaced whenever a call is recorded
	faults     []*Fault
	latency    time.Duration
	writeLimit rateWindow // presence writes: setPresence, clearPresence, setStatusMessage
	readLimit  rateWindow // presence reads: getPresencesByUserId
	done       chan struct{}
}

type sessionKey struct{ user, session string }

type tokenInfo struct {
	clientID string
	expires  time.Time
	revoked  bool
}

// Option configures a Server.
type Option func(*Server)

// WithUsers adds users to the fake directory.
func WithUsers(users ...User) Option {
	return func(s *Server) { s.users = append(s.users, users...) }
}

// WithTenant sets the tenant id the fake accepts (default DefaultTenantID).
func WithTenant(id string) Option { return func(s *Server) { s.tenantID = id } }

// WithClient sets the application (client) id and secret the fake accepts.
func WithClient(id, secret string) Option {
	return func(s *Server) { s.clientID, s.clientSecret = id, secret }
}

// WithTokenLifetime sets the expires_in of issued tokens.
func WithTokenLifetime(d time.Duration) Option { return func(s *Server) { s.tokenLifetime = d } }

// WithClock makes the fake read time from now (sessions, tokens, the rate
// limit and call times). Advance adds to it.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.clock = now } }

// NewServer starts a fake Entra + Graph TLS server and closes it when the
// test ends.
func NewServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := &Server{
		tb:            tb,
		tenantID:      DefaultTenantID,
		clientID:      DefaultClientID,
		clientSecret:  DefaultClientSecret,
		tokenLifetime: DefaultTokenLifetime,
		clock:         time.Now,
		tokens:        make(map[string]tokenInfo),
		sessions:      make(map[sessionKey]Session),
		people:        make(map[string]*person),
		changed:       make(chan struct{}),
		done:          make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	// HTTP/1.1 only, so that a connection can be hijacked and reset.
	s.srv.StartTLS()
	tb.Cleanup(s.Close)
	return s
}

// Close shuts the server down; pending delayed answers return at once.
// NewServer registers it with the test's cleanup.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		return
	default:
		close(s.done)
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// URL is the server's base URL, e.g. https://127.0.0.1:43121 (no slash).
func (s *Server) URL() string { return s.srv.URL }

// GraphURL is the Graph endpoint: URL()+"/v1.0".
func (s *Server) GraphURL() string { return s.srv.URL + "/v1.0" }

// AuthorityHost is the Entra authority host: URL()+"/".
func (s *Server) AuthorityHost() string { return s.srv.URL + "/" }

// TenantID is the tenant the fake accepts.
func (s *Server) TenantID() string { return s.tenantID }

// ClientID is the application id the fake accepts (and the sessionId it
// requires).
func (s *Server) ClientID() string { return s.clientID }

// ClientSecret is the secret the fake accepts for ClientID.
func (s *Server) ClientSecret() string { return s.clientSecret }

// HTTPClient returns an *http.Client that trusts the server.
func (s *Server) HTTPClient() *http.Client { return s.srv.Client() }

// TLSConfig returns a TLS client configuration that trusts the server.
func (s *Server) TLSConfig() *tls.Config {
	return s.srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
}

// CAPEM is the PEM of the server's (self-signed) TLS certificate, to trust
// as a root.
func (s *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// CAFile writes CAPEM to a file in the test's temporary directory (once)
// and returns its path, for config.Graph.CAFile.
func (s *Server) CAFile() string {
	s.caOnce.Do(func() {
		s.caPath = filepath.Join(s.tb.TempDir(), "graphtest-ca.pem")
		if err := os.WriteFile(s.caPath, s.CAPEM(), 0o600); err != nil {
			s.tb.Fatalf("graphtest: write CA file: %v", err)
		}
	})
	return s.caPath
}

// Config returns a config.Graph that points at the fake with client secret
// authentication: Endpoint, AuthorityHost, TenantID, ClientID, ClientSecret
// and CAFile are set; everything else is zero (defaults).
func (s *Server) Config() config.Graph {
	return config.Graph{
		TenantID:      s.tenantID,
		ClientID:      s.clientID,
		Auth:          "client_secret",
		ClientSecret:  config.Secret(s.clientSecret),
		Endpoint:      s.GraphURL(),
		AuthorityHost: s.AuthorityHost(),
		CAFile:        s.CAFile(),
	}
}

// Now is the fake's clock: the WithClock function (default time.Now) plus
// everything passed to Advance.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nowLocked()
}

func (s *Server) nowLocked() time.Time { return s.clock().Add(s.offset) }

// Advance moves the fake's clock forward by d (sessions and tokens expire,
// the rate-limit window moves).
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
}

// AddUser adds a user to the fake directory.
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users = append(s.users, u)
}

// RevokeTokens makes every token issued so far invalid: the next Graph call
// with one of them is answered 401 InvalidAuthenticationToken, as Graph does
// after a token is revoked or a signing key rolls over.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.tokens {
		t.revoked = true
		s.tokens[k] = t
	}
}

// TokensIssued is the number of access tokens the fake has issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenSeq
}

// Session returns the live (unexpired) session of the application
// (sessionId = ClientID) for user, as addressed in the setPresence path.
func (s *Server) Session(user string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.sessions[sessionKey{strings.ToLower(user), s.clientID}]
	if !ok || !s.nowLocked().Before(se.Expires) {
		return Session{}, false
	}
	return se, true
}

// Sessions returns every live session, keyed by user.
func (s *Server) Sessions() map[string]Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.nowLocked()
	out := make(map[string]Session)
	for _, se := range s.sessions {
		if now.Before(se.Expires) {
			out[se.User] = se
		}
	}
	return out
}

// SetSession installs a session directly (as if set earlier), for tests of
// restarts and of clears.
func (s *Server) SetSession(se Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if se.SessionID == "" {
		se.SessionID = s.clientID
	}
	s.sessions[sessionKey{strings.ToLower(se.User), se.SessionID}] = se
}

// Calls returns a copy of every recorded call, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallsFor returns the recorded calls whose User is user
// (case-insensitive), oldest first.
func (s *Server) CallsFor(user string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if strings.EqualFold(c.User, user) {
			out = append(out, c)
		}
	}
	return out
}

// CallsOp returns the recorded calls of one operation, oldest first.
func (s *Server) CallsOp(op string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if c.Op == op {
			out = append(out, c)
		}
	}
	return out
}

// PresenceCalls returns the recorded setPresence and clearPresence calls.
// (Status messages and reads are not among them: CallsOp.)
func (s *Server) PresenceCalls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if c.Op == OpSetPresence || c.Op == OpClearPresence {
			out = append(out, c)
		}
	}
	return out
}

// CallCount returns how many calls of the operations ops have been
// recorded (since the last Reset), counted without copying them: what a
// test that waits for calls while they come should ask. Calls,
// PresenceCalls and CallsOp copy every recorded call with the fake's lock
// held, which every request takes too; asked every 10 ms with 150,000
// calls recorded, they cut the presence calls the fake answers from ~500
// to ~200 a second (BenchmarkPresenceBurstWhilePolled).
func (s *Server) CallCount(ops ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, op := range ops {
		n += s.counts[op]
	}
	return n
}

// Reset forgets recorded calls, faults, latency and the rate limits. Users,
// sessions, what people set themselves and issued tokens stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls, s.counts = nil, nil
	s.faults = nil
	s.latency = 0
	s.writeLimit, s.readLimit = rateWindow{}, rateWindow{}
}

// WaitFor blocks until a recorded call (already recorded or future)
// satisfies pred, and returns it; or until ctx is done.
func (s *Server) WaitFor(ctx context.Context, pred func(Call) bool) (Call, error) {
	seen := 0
	for {
		s.mu.Lock()
		if seen > len(s.calls) { // Reset in between
			seen = 0
		}
		for ; seen < len(s.calls); seen++ {
			if pred(s.calls[seen]) {
				c := s.calls[seen]
				s.mu.Unlock()
				return c, nil
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Call{}, ctx.Err()
		}
	}
}

// Op is a WaitFor predicate matching an operation and, if user is not
// empty, a user.
func Op(op, user string) func(Call) bool {
	return func(c Call) bool {
		return c.Op == op && (user == "" || strings.EqualFold(c.User, user))
	}
}

func (s *Server) record(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	if s.counts == nil {
		s.counts = make(map[string]int)
	}
	s.counts[c.Op]++
	close(s.changed)
	s.changed = make(chan struct{})
}
