// Package graph is calpresence's Microsoft Graph client: credentials
// (azidentity), national-cloud endpoints, setPresence, clearPresence,
// setStatusMessage, the bulk read-back of presence (getPresencesByUserId),
// user lookup and the classification of failures into *presence.Error.
//
// It is the only package that imports msgraph-sdk-go, kiota and
// azidentity; everything else talks to it through small interfaces (sync)
// and is tested against graph/graphtest.
//
// Decisions worth knowing:
//
//   - Only the users request builders of msgraph-sdk-go (and the one for
//     communications/getPresencesByUserId) are used, on a
//     request adapter built here with JSON (de)serialisation and an explicit
//     middleware chain (see middlewares): the SDK's root client would link
//     every Graph API and registers global serialisers.
//   - What an answer means is graph/policy's (policy.Classify, per
//     operation and status); the middleware retries within a call what
//     it calls Retry for a cause that passes in seconds (policy.RetryWithin),
//     with its back-off (policy.Backoff) or Retry-After.
//   - graph.timeout bounds each HTTP attempt, not the whole call: waiting
//     for Retry-After between attempts is bounded by the retry policy (3
//     retries, at most 30 s per wait) and by the caller's context. A longer
//     Retry-After is not slept through; the call fails with Kind Retry and
//     RetryAfter set, for the reconciler to reschedule.
//   - Transport errors and timeouts are not retried here (Kind Retry): the
//     reconciler owns the schedule. Token requests are retried by azcore's
//     own policy inside azidentity; their outcome is classified as
//     policy.OpToken.
//   - Concurrency (graph.max_concurrency) is the caller's (sync's
//     executor). The presence rate limit (graph.rate_limit per
//     graph.rate_window) is applied here, to every attempt of every
//     presence write, by the Pacer the caller passes (WithPacer): only
//     here is each retry seen. Reads have their own budget in Graph and
//     their own Pacer (WithReadPacer); ReadPresences bounds its own
//     concurrency.
//   - After a 401 the credential is rebuilt (azidentity cannot drop a
//     cached token; rebuilding also re-reads client_secret_file and
//     certificate_file) and the call is retried once, at most once per 10 s
//     per client.
//   - ResolveUser caches nothing: the one cache of resolved people is
//     sync's directory, kept durably in state, which also forgets an id
//     that Graph no longer knows. A second cache here would keep serving it.
package graph

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azpolicy "github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	abs "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoft/kiota-abstractions-go/serialization"
	kauth "github.com/microsoft/kiota-authentication-azure-go"
	nethttplibrary "github.com/microsoft/kiota-http-go"
	jsonserialization "github.com/microsoft/kiota-serialization-json-go"
	core "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/communications"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/presence"
)

// Operation names in *presence.Error.Op (policy's).
const (
	OpSetPresence   = policy.OpSetPresence
	OpClearPresence = policy.OpClearPresence
	OpResolveUser   = policy.OpResolveUser
)

// Retry policy of the middleware (see retryHandler).
const (
	defaultMaxRetries = 3
	defaultBaseDelay  = time.Second
	defaultMaxDelay   = 30 * time.Second
)

// Client calls Microsoft Graph for one application (client id) in one
// tenant. It is safe for concurrent use.
type Client struct {
	logger   *slog.Logger
	dryRun   bool
	clientID string
	ep       endpoints
	now      func() time.Time

	cred      *refreshingCredential
	users     func() *users.UsersRequestBuilder
	presences func() *communications.GetPresencesByUserIdRequestBuilder
	transport *http.Transport // nil when given by WithTransport or in dry run
}

// Option adjusts a Client; tests use them.
type Option func(*options)

type options struct {
	transport  http.RoundTripper
	maxRetries int
	baseDelay  time.Duration
	maxDelay   time.Duration
	now        func() time.Time
	pacer      Pacer
	readPacer  Pacer
	retryAfter func(op string, d time.Duration)
}

// Pacer paces the presence requests the client sends. Graph limits
// presence calls per app and tenant (10,000 writes per 30 s; 1,500 reads
// per 30 s, a budget of their own) and counts every request that reaches
// it, retries included; so every attempt of a setPresence, clearPresence,
// setStatusMessage or getPresencesByUserId, the client's own retries of
// retries (what policy.Classify calls Retry) among them, takes a slot of its budget's pacer first, and a
// 429 pauses every request of that budget, since Graph throttles the app,
// not one user. policy.Pacer implements it.
type Pacer interface {
	// Acquire blocks until a request may go out; release is called when
	// its answer has arrived.
	Acquire(ctx context.Context) (release func(), err error)
	// Pause holds every request back for d.
	Pause(d time.Duration)
}

// WithPacer paces every presence write (setPresence, clearPresence,
// setStatusMessage) through p (see Pacer).
func WithPacer(p Pacer) Option { return func(o *options) { o.pacer = p } }

// WithReadPacer paces every presence read (getPresencesByUserId) through
// p, a second pacer of the same kind as WithPacer's sized for Graph's read
// budget (policy.ReadRate). A 429 to a read pauses reads only; writes go
// on.
func WithReadPacer(p Pacer) Option { return func(o *options) { o.readPacer = p } }

// WithRetryAfterObserver calls observe with the operation (policy's name)
// and the wait each time an answer that policy.Classify calls Retry
// carries a Retry-After, which is then honoured: by the client's own
// retry, by the pacer's pause after a 429, or by the caller (the
// *presence.Error's RetryAfter). The daemon feeds
// calpresence_graph_retry_after_seconds with it.
func WithRetryAfterObserver(observe func(op string, d time.Duration)) Option {
	return func(o *options) { o.retryAfter = observe }
}

// WithTransport replaces the TLS transport under the middleware, for Graph
// and for token requests (graph.ca_file is then not applied).
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithRetry sets the middleware's retry policy: at most maxRetries retries
// of an answer policy.RetryWithin names (408, 409, 429, 5xx), waiting
// policy.Backoff{base, maxDelay} when the answer has no Retry-After, and
// returning to the caller instead of waiting longer than maxDelay. The
// default is 3 retries, 1 s, 30 s.
func WithRetry(maxRetries int, base, maxDelay time.Duration) Option {
	return func(o *options) { o.maxRetries, o.baseDelay, o.maxDelay = maxRetries, base, maxDelay }
}

// WithClock sets the clock used for Retry-After dates and caches.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// New builds a client from the graph configuration. It contacts nothing:
// the first token is requested with the first call. With cfg.DryRun it
// needs no credentials and never sends anything.
//
// The timeout (cfg.Timeout, default 30 s) applies to each HTTP attempt;
// waits for Retry-After come on top, bounded by the retry policy and ctx of
// each call.
func New(ctx context.Context, cfg config.Graph, logger *slog.Logger, opts ...Option) (*Client, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := options{maxRetries: defaultMaxRetries, baseDelay: defaultBaseDelay, maxDelay: defaultMaxDelay, now: time.Now}
	for _, fn := range opts {
		fn(&o)
	}
	ep, err := resolveEndpoints(cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{
		logger:   logger,
		dryRun:   cfg.DryRun,
		clientID: cfg.ClientID,
		ep:       ep,
		now:      o.now,
	}
	if cfg.DryRun {
		logger.InfoContext(ctx, "graph: dry run, presence calls are logged, not sent", "endpoint", ep.Graph)
		return c, nil
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("graph: client_id is required (it is also the presence sessionId)")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = config.Default().Graph.Timeout
	}

	base := o.transport
	if base == nil {
		t, err := newBaseTransport(cfg.CAFile, cfg.MaxConcurrency)
		if err != nil {
			return nil, err
		}
		c.transport, base = t, t
	}
	authClient := authHTTPClient(base, timeout)
	cred, err := newRefreshingCredential(func() (azcore.TokenCredential, error) {
		return newCredential(cfg, ep, authClient)
	}, o.now)
	if err != nil {
		return nil, err
	}
	c.cred = cred
	authProvider, err := kauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, []string{ep.Scope}, []string{ep.Host})
	if err != nil {
		return nil, fmt.Errorf("graph: authentication provider: %w", err)
	}
	retry := &retryHandler{
		maxRetries: o.maxRetries, baseDelay: o.baseDelay, maxDelay: o.maxDelay,
		timeout: timeout, logger: logger, now: o.now, writes: o.pacer, reads: o.readPacer, retryAfter: o.retryAfter,
	}
	httpClient := &http.Client{
		Transport: nethttplibrary.NewCustomTransportWithParentTransport(base, middlewares(retry, sdkVersion())...),
		// The redirect middleware follows redirects; the client must not.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	adapter, err := core.NewGraphRequestAdapterBaseWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(
		authProvider,
		core.GraphClientOptions{GraphServiceLibraryVersion: sdkVersion()},
		jsonserialization.NewJsonParseNodeFactory(),
		jsonserialization.NewJsonSerializationWriterFactory(),
		httpClient)
	if err != nil {
		return nil, fmt.Errorf("graph: request adapter: %w", err)
	}
	adapter.SetBaseUrl(ep.Graph)
	// A request builder is not safe for concurrent use (kiota writes the
	// base URL into its path parameters at every request, and a builder's
	// own Get shares its map), and calls run side by side: each call gets
	// a builder of its own.
	c.users = func() *users.UsersRequestBuilder {
		return users.NewUsersRequestBuilderInternal(map[string]string{"baseurl": ep.Graph}, adapter)
	}
	c.presences = func() *communications.GetPresencesByUserIdRequestBuilder {
		return communications.NewGetPresencesByUserIdRequestBuilderInternal(map[string]string{"baseurl": ep.Graph}, adapter)
	}
	logger.DebugContext(ctx, "graph: client ready", "endpoint", ep.Graph, "authority", ep.Authority,
		"auth", cfg.Auth, "instance_discovery", !ep.Override)
	return c, nil
}

// Authenticate asks the authority for a token now (the credential caches
// it for the calls to come), so that a broken secret, certificate or
// consent shows at start, not at the first meeting. In dry run it does
// nothing.
func (c *Client) Authenticate(ctx context.Context) error {
	if c.dryRun {
		return nil
	}
	// EnableCAE as kiota's authentication provider asks (its default):
	// azidentity caches CAE and non-CAE tokens apart, and the token asked
	// for here is to serve the first calls too.
	if _, err := c.cred.GetToken(ctx, azpolicy.TokenRequestOptions{Scopes: []string{c.ep.Scope}, EnableCAE: true}); err != nil {
		return fmt.Errorf("graph: token from %s: %w", c.ep.Authority, err)
	}
	return nil
}

// Authenticated reports whether the authority has issued a token since the
// client was built (always true in dry run): /readyz is not ready before.
func (c *Client) Authenticated() bool {
	return c.dryRun || c.cred.issued.Load()
}

// Close releases idle connections.
func (c *Client) Close() {
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
}

// sdkVersion is msgraph-sdk-go's version, for the SdkVersion header.
func sdkVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/microsoftgraph/msgraph-sdk-go" {
				return strings.TrimPrefix(m.Version, "v")
			}
		}
	}
	return "unknown"
}

// SetPresence sets the application's presence session for userID (an
// object id or UPN): POST /users/{id}/presence/setPresence with sessionId =
// client id. expiration is sent as an ISO 8601 duration (90m → PT1H30M)
// after truncation to whole seconds and must lie within Graph's
// PT5M..PT4H; an unsupported pair or expiration fails as Permanent without
// a call.
func (c *Client) SetPresence(ctx context.Context, userID, availability, activity string, expiration time.Duration) error {
	if !presence.Allowed(availability, activity) {
		return &presence.Error{Op: OpSetPresence, User: userID, Kind: presence.Permanent,
			Message: fmt.Sprintf("availability %q with activity %q is not a combination Graph accepts", availability, activity)}
	}
	exp := expiration.Truncate(time.Second)
	if exp < presence.MinLease || exp > presence.MaxLease {
		return &presence.Error{Op: OpSetPresence, User: userID, Kind: presence.Permanent,
			Message: fmt.Sprintf("expiration %s is outside %s..%s", expiration, presence.MinLease, presence.MaxLease)}
	}
	iso := isoDuration(exp)
	if c.dryRun {
		c.logger.InfoContext(ctx, "graph: dry run: set presence", "user", userID,
			"availability", availability, "activity", activity, "expiration", exp.String(), "expiration_iso", iso.String())
		return nil
	}
	return c.do(ctx, OpSetPresence, userID, func(ctx context.Context) error {
		body := users.NewItemPresenceSetPresencePostRequestBody()
		body.SetSessionId(&c.clientID)
		body.SetAvailability(&availability)
		body.SetActivity(&activity)
		body.SetExpirationDuration(iso)
		return c.users().ByUserId(userID).Presence().SetPresence().Post(ctx, body, nil)
	})
}

// ClearPresence ends the application's presence session for userID:
// POST /users/{id}/presence/clearPresence with sessionId = client id. A 404
// (no such session: it expired or was never set) is returned as a
// *presence.Error of Kind NotFound, which callers treat as success.
func (c *Client) ClearPresence(ctx context.Context, userID string) error {
	if c.dryRun {
		c.logger.InfoContext(ctx, "graph: dry run: clear presence", "user", userID)
		return nil
	}
	return c.do(ctx, OpClearPresence, userID, func(ctx context.Context) error {
		body := users.NewItemPresenceClearPresencePostRequestBody()
		body.SetSessionId(&c.clientID)
		return c.users().ByUserId(userID).Presence().ClearPresence().Post(ctx, body, nil)
	})
}

// ResolveUser returns the Entra user that address names, with their UPN:
// GET /users/{address}?$select=id,userPrincipalName (a UPN or an object
// id), and when that is 404 and address is an e-mail address, the user
// whose mail or one of whose proxyAddresses it is. Entra compares all of
// these without regard to case. An address that names nobody is a
// *presence.Error of Kind NotFound; one that names several users (a mail
// address shared by mistake) is Permanent. It caches nothing (the caller
// owns the cache). In dry run it returns the address, lower-cased, as both
// id and UPN without a call.
func (c *Client) ResolveUser(ctx context.Context, address string) (presence.Person, error) {
	u := strings.TrimSpace(address)
	if u == "" {
		return presence.Person{}, &presence.Error{Op: OpResolveUser, User: address, Kind: presence.Permanent, Message: "empty address"}
	}
	if c.dryRun {
		u = strings.ToLower(u)
		return presence.Person{ID: u, UPN: u}, nil
	}
	return c.lookup(ctx, u)
}

// userFields are the properties a lookup asks for.
var userFields = []string{"id", "userPrincipalName"}

func person(id, upn *string) presence.Person {
	var p presence.Person
	if id != nil {
		p.ID = *id
	}
	if upn != nil {
		p.UPN = *upn
	}
	return p
}

func (c *Client) lookup(ctx context.Context, u string) (presence.Person, error) {
	var got presence.Person
	err := c.do(ctx, OpResolveUser, u, func(ctx context.Context) error {
		res, err := c.users().ByUserId(u).Get(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: userFields},
		})
		if err == nil && res != nil {
			got = person(res.GetId(), res.GetUserPrincipalName())
		}
		return err
	})
	if err == nil {
		if got.ID == "" {
			return presence.Person{}, &presence.Error{Op: OpResolveUser, User: u, Kind: presence.Retry, Message: "answer without an id"}
		}
		return got, nil
	}
	if presence.KindOf(err) != presence.NotFound || !strings.Contains(u, "@") {
		return presence.Person{}, err
	}

	// Not a UPN: look for the address as mail or proxy address. The
	// any() lambda on proxyAddresses is an advanced query: it needs
	// ConsistencyLevel: eventual and $count=true.
	q := strings.ReplaceAll(u, "'", "''")
	filter := fmt.Sprintf("mail eq '%s' or proxyAddresses/any(p:p eq 'smtp:%s')", q, q)
	count := true
	headers := abs.NewRequestHeaders()
	headers.Add("ConsistencyLevel", "eventual")
	var found []presence.Person
	err = c.do(ctx, OpResolveUser, u, func(ctx context.Context) error {
		res, err := c.users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{
			Headers: headers,
			QueryParameters: &users.UsersRequestBuilderGetQueryParameters{
				Filter: &filter, Select: userFields, Count: &count,
			},
		})
		found = found[:0]
		if err == nil && res != nil {
			for _, v := range res.GetValue() {
				if v == nil {
					continue
				}
				if p := person(v.GetId(), v.GetUserPrincipalName()); p.ID != "" {
					found = append(found, p)
				}
			}
		}
		return err
	})
	if err != nil {
		return presence.Person{}, err
	}
	switch len(found) {
	case 0:
		return presence.Person{}, &presence.Error{Op: OpResolveUser, User: u, Status: http.StatusNotFound, Kind: presence.NotFound,
			Message: "no user has this user principal name, mail or proxy address"}
	case 1:
		return found[0], nil
	}
	return presence.Person{}, &presence.Error{Op: OpResolveUser, User: u, Kind: presence.Permanent,
		Message: fmt.Sprintf("ambiguous: %d users have this mail or proxy address", len(found))}
}

// do runs one Graph call: classification of the outcome, and after a 401
// one refresh of the token and one retry. Concurrency and the presence rate
// limit are the caller's (sync bounds and paces every call it makes).
func (c *Client) do(ctx context.Context, op, user string, call func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		gen := c.cred.generation()
		cctx, o := withOutcome(ctx)
		err := call(cctx)
		pe := classify(op, user, err, o, c.now())
		if pe == nil {
			return nil
		}
		if pe.Kind == presence.Unauthorized && attempt == 0 {
			retry, rerr := c.cred.refresh(gen)
			if rerr != nil {
				pe.Err = fmt.Errorf("refresh credential: %w", rerr)
				return pe
			}
			if retry {
				c.logger.InfoContext(ctx, "graph: unauthorized, retrying with a new token", "op", op, "user", user)
				continue
			}
		}
		return pe
	}
}

// isoDuration is d (whole seconds, at most PT4H) as kiota's ISO 8601
// duration: 90m → PT1H30M, 4h → PT4H.
func isoDuration(d time.Duration) *serialization.ISODuration {
	secs := int(d / time.Second)
	return serialization.NewDuration(0, 0, 0, secs/3600, secs%3600/60, secs%60, 0)
}
