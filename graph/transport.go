package graph

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/presence"
	nethttplibrary "github.com/microsoft/kiota-http-go"
	core "github.com/microsoftgraph/msgraph-sdk-go-core"
)

// newBaseTransport is the TLS transport under the middleware (and under
// azidentity): the system roots plus the certificates of caFile.
func newBaseTransport(caFile string, maxConcurrency int) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ForceAttemptHTTP2 = true
	// Keep a connection per concurrent call: over HTTP/1.1 (a proxy, the
	// tests' fake) net/http's default of 2 idle connections per host makes
	// most calls of a burst pay a new TLS handshake.
	t.MaxIdleConnsPerHost = max(maxConcurrency, http.DefaultMaxIdleConnsPerHost)
	if caFile == "" {
		return t, nil
	}
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("graph: read ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("graph: ca_file %s: no PEM certificates found", caFile)
	}
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return t, nil
}

// middlewares is the fixed kiota middleware chain, outermost first.
//
// kiota's default chain is built from a map, so its order varies; and its
// retry handler re-sends a POST body only if the body can seek, so with
// compression (or any consumer) before it, a retried setPresence goes out
// empty. Here the retry handler is outermost and keeps the original bytes;
// there is no compression handler (presence bodies are ~150 bytes).
//
//  1. retryHandler: what policy.RetryWithin names (408, 409, 429, 5xx),
//     with Retry-After; per-attempt timeout; the pacers
//  2. RedirectHandler
//  3. ParametersNameDecodingHandler
//  4. UserAgentHandler
//  5. GraphTelemetryHandler (SdkVersion, client-request-id)
//  6. HeadersInspectionHandler
//  7. recorder: keeps the last response's status, headers and error body
//     for classify
func middlewares(retry *retryHandler, sdkVersion string) []nethttplibrary.Middleware {
	return []nethttplibrary.Middleware{
		retry,
		nethttplibrary.NewRedirectHandler(),
		nethttplibrary.NewParametersNameDecodingHandler(),
		nethttplibrary.NewUserAgentHandlerWithOptions(&nethttplibrary.UserAgentHandlerOptions{
			Enabled: true, ProductName: "calpresence", ProductVersion: sdkVersion,
		}),
		core.NewGraphTelemetryHandler(&core.GraphClientOptions{GraphServiceLibraryVersion: sdkVersion}),
		nethttplibrary.NewHeadersInspectionHandler(),
		recorder{},
	}
}

// retryHandler retries the answers policy.RetryWithin names for the
// request's operation (408, 409, 429 and 5xx), waiting for Retry-After
// (seconds or an HTTP date) or else the policy's back-off from baseDelay.
// A wait longer than maxDelay, or past the caller's
// deadline, is not slept through: the answer goes back to the caller, whose
// *presence.Error carries RetryAfter so the reconciler can reschedule.
//
// Each attempt runs under its own timeout, so waiting for Retry-After does
// not eat into the time allowed for the request itself.
type retryHandler struct {
	maxRetries int
	baseDelay  time.Duration
	maxDelay   time.Duration
	timeout    time.Duration
	logger     *slog.Logger
	now        func() time.Time
	writes     Pacer                            // presence writes; nil: not paced
	reads      Pacer                            // presence reads; nil: not paced
	retryAfter func(op string, d time.Duration) // WithRetryAfterObserver; may be nil
}

// opOf names the operation of r for policy.Classify: the presence writes
// and the read by their path, any GET as a user lookup (the only reads
// of users the client makes).
func opOf(r *http.Request) string {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet:
		return policy.OpResolveUser
	case strings.HasSuffix(p, "/presence/setPresence"):
		return policy.OpSetPresence
	case strings.HasSuffix(p, "/presence/clearPresence"):
		return policy.OpClearPresence
	case strings.HasSuffix(p, "/presence/setStatusMessage"):
		return policy.OpSetStatusMessage
	case strings.HasSuffix(p, "/communications/getPresencesByUserId"):
		return policy.OpReadPresences
	}
	return ""
}

// pacerFor is the pacer that counts op: Graph keeps two presence budgets
// per app and tenant, one for the writes (setPresence, clearPresence,
// setStatusMessage) and one for the reads (getPresencesByUserId, 1,500
// calls per 30 s). Other requests (user lookups) are counted by neither;
// for them it returns nil.
func (h *retryHandler) pacerFor(op string) Pacer {
	switch op {
	case policy.OpSetPresence, policy.OpClearPresence, policy.OpSetStatusMessage:
		return h.writes
	case policy.OpReadPresences:
		return h.reads
	}
	return nil
}

// Intercept implements nethttplibrary.Middleware.
func (h *retryHandler) Intercept(p nethttplibrary.Pipeline, index int, req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		body = b
	}
	ctx := req.Context()
	op := opOf(req)
	pacer := h.pacerFor(op)
	paced := pacer != nil
	for attempt := 0; ; attempt++ {
		r := req.Clone(ctx)
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			r.ContentLength = int64(len(body))
		}
		if attempt > 0 {
			r.Header.Set("Retry-Attempt", strconv.Itoa(attempt))
		}
		release := func() {}
		if paced {
			var err error
			if release, err = pacer.Acquire(ctx); err != nil {
				return nil, err
			}
		}
		resp, err := h.once(p, index, r)
		release() // Graph has counted the request by now
		if err != nil {
			return resp, err
		}
		if policy.Classify(op, resp.StatusCode) != presence.Retry {
			return resp, nil
		}
		delay, ok := policy.RetryAfter(resp.Header.Get("Retry-After"), h.now())
		if ok && h.retryAfter != nil {
			// Honoured by someone: waited for here, by every request of
			// the pacer's budget (a 429), or by the caller, who gets it
			// as RetryAfter (policy.Wait).
			h.retryAfter(op, delay)
		}
		if !policy.RetryWithin(op, resp.StatusCode) {
			return resp, nil
		}
		if !ok {
			delay = policy.Backoff{Base: h.baseDelay, Max: h.maxDelay}.Delay(attempt + 1)
		}
		if paced && resp.StatusCode == http.StatusTooManyRequests {
			// Graph throttles the app: nobody's request against the
			// same budget goes out before this one may be retried.
			pacer.Pause(delay)
		}
		if attempt >= h.maxRetries || delay > h.maxDelay {
			return resp, nil
		}
		if dl, ok := ctx.Deadline(); ok && h.now().Add(delay).After(dl) {
			return resp, nil
		}
		drain(resp)
		h.logger.DebugContext(ctx, "graph: retrying", "method", req.Method, "path", req.URL.Path,
			"status", resp.StatusCode, "attempt", attempt+1, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// once sends one attempt under the per-attempt timeout. The timeout's
// context lives until the response body is closed.
func (h *retryHandler) once(p nethttplibrary.Pipeline, index int, r *http.Request) (*http.Response, error) {
	if h.timeout <= 0 {
		return p.Next(r, index)
	}
	ctx, cancel := context.WithTimeoutCause(r.Context(), h.timeout, errAttemptTimeout)
	resp, err := p.Next(r.WithContext(ctx), index)
	if err != nil {
		cancel()
		if context.Cause(ctx) == errAttemptTimeout {
			return nil, &timeoutError{after: h.timeout, err: err}
		}
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

var errAttemptTimeout = fmt.Errorf("graph request timed out")

// timeoutError is an attempt that ran out of time (graph.timeout).
type timeoutError struct {
	after time.Duration
	err   error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("no answer within %s: %v", e.after, e.err)
}
func (e *timeoutError) Unwrap() error { return e.err }
func (e *timeoutError) Timeout() bool { return true }

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
	once   sync.Once
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.cancel)
	return err
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// outcome is what the recorder saw of the last attempt of one call. The
// client puts a fresh one in the context of each call; classify reads it.
type outcome struct {
	mu       sync.Mutex
	attempts int
	status   int
	header   http.Header
	body     []byte // error bodies only, at most maxErrorBody
}

type outcomeKey struct{}

func withOutcome(ctx context.Context) (context.Context, *outcome) {
	o := &outcome{}
	return context.WithValue(ctx, outcomeKey{}, o), o
}

func (o *outcome) snapshot() (status int, header http.Header, body []byte, attempts int) {
	if o == nil {
		return 0, nil, nil, 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.status, o.header, o.body, o.attempts
}

// maxErrorBody bounds how much of an error body is kept.
const maxErrorBody = 64 << 10

// recorder is the innermost middleware: it notes each attempt's status and
// headers, and buffers error bodies (which it hands on unchanged), so that
// classify sees the real answer even when kiota cannot parse it (an HTML
// page from a proxy, an empty body).
type recorder struct{}

// Intercept implements nethttplibrary.Middleware.
func (recorder) Intercept(p nethttplibrary.Pipeline, index int, req *http.Request) (*http.Response, error) {
	resp, err := p.Next(req, index)
	o, _ := req.Context().Value(outcomeKey{}).(*outcome)
	if o == nil {
		return resp, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.attempts++
	o.status, o.header, o.body = 0, nil, nil
	if err != nil {
		return resp, err
	}
	o.status, o.header = resp.StatusCode, resp.Header.Clone()
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		o.body = b
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
	}
	return resp, nil
}
