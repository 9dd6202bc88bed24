package sources

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// Fetch defaults, used when a Fetcher field is zero. The daemon always
// passes schedule.fetch_timeout and schedule.max_feed_bytes; these are
// config.Default's values (config imports sources, so they cannot be read
// from there; a config test holds them equal).
const (
	DefaultFetchTimeout = 30 * time.Second
	DefaultMaxFeedBytes = 10 << 20 // 10 MiB
	DefaultUserAgent    = "calpresence"

	// maxRedirects is how many redirects one fetch follows.
	maxRedirects = 5
	// maxDrain is how much of an error response is read so that the
	// connection can be reused; a larger body is dropped with the connection.
	maxDrain = 64 << 10
)

// ErrTooLarge reports a feed body over the Fetcher's size limit. Test for it
// with errors.Is.
var ErrTooLarge = errors.New("feed too large")

// StatusError is a non-2xx (and non-304) HTTP answer to a feed fetch.
type StatusError struct {
	Code   int    // e.g. 404
	Status string // e.g. "404 Not Found"
}

func (e *StatusError) Error() string { return "unexpected status " + e.Status }

// Validators are a feed's HTTP cache validators (RFC 9110 §8.8), sent back
// as If-None-Match and If-Modified-Since on the next fetch.
type Validators struct {
	ETag         string
	LastModified string
}

// FetchRequest is one fetch of one feed.
type FetchRequest struct {
	// Name is the source's name: the caller's logs use it, and a refused
	// address's error names it.
	Name string
	// URL is https://, http://, or a file URL: file:///abs/path,
	// file://localhost/abs/path, or file:relative/path (resolved against the
	// working directory).
	URL string
	// Headers are sent with every request to the feed's own host. A redirect
	// to another host (or scheme or port) drops all of them, since any may be a
	// credential. A "Host" entry sets the request's Host. Accept-Encoding is
	// better left alone: setting it turns off transparent gzip decoding.
	Headers map[string]string
	// Prev and PrevHash describe the last good copy the caller holds. Leave
	// them zero when there is none: a 304 answer is then an error.
	Prev     Validators
	PrevHash [32]byte
	// AllowPrivate lets the feed, and its redirects, reach what is
	// otherwise refused with ErrRefusedAddress (link-local addresses and
	// cloud metadata services, see refusedAddr and metadataNames): the
	// source's allow_private.
	AllowPrivate bool
	// PublicOnly confines the feed, and its redirects, to public
	// addresses: loopback, private, shared, link-local and unique-local
	// ranges are refused too (ErrRefusedAddress), and so are file URLs.
	// For a URL a person gave (their own feed): it must not make the
	// worker read what only the worker's network reaches. It wins over
	// AllowPrivate.
	PublicOnly bool
}

// FetchResult is the outcome of a successful fetch.
type FetchResult struct {
	// Body is the feed, decompressed if it came gzip-encoded. It is nil when
	// NotModified.
	Body []byte
	// NotModified is true when the server answered 304, or when the body's
	// hash equals the request's PrevHash: the caller's copy is current and
	// need not be parsed again.
	NotModified bool
	// Validators are the ones to send next time: the response's, or for a 304
	// the request's updated by any the 304 carried. Empty for file URLs.
	Validators Validators
	// Hash is the SHA-256 of the body (PrevHash for a 304).
	Hash [32]byte
	// Status is the HTTP status code; 0 for file URLs. It is also set on a
	// StatusError.
	Status int
}

// Fetcher gets feeds. Its zero value is usable (http.DefaultClient and the
// defaults); NewFetcher gives a tuned client that also refuses
// connections to cloud metadata services. A Fetcher is safe for
// concurrent use.
//
// Whatever the client, a feed URL or redirect whose host is a metadata
// service name or a refused IP literal fails with ErrRefusedAddress unless
// the request has AllowPrivate.
type Fetcher struct {
	// Client does the HTTP requests. Its CheckRedirect is replaced for each
	// fetch by the redirect policy described on FetchRequest.Headers. Leave
	// Client.Timeout zero: Fetcher.Timeout already bounds the body read.
	Client *http.Client
	// PrivateClient does the requests that have AllowPrivate (nil: Client).
	// NewFetcher's is Client without the address check, with a connection
	// pool of its own: a connection dialed for a source allowed to reach a
	// link-local address is never reused for another source.
	PrivateClient *http.Client
	// PublicClient does the requests that have PublicOnly. NewFetcher's
	// refuses every address that is not public (publicAddr). Nil: such
	// requests fail.
	PublicClient *http.Client
	// Timeout bounds one fetch, from connecting to reading the last byte of
	// the body (default DefaultFetchTimeout).
	Timeout time.Duration
	// MaxBytes caps the (decompressed) body (default DefaultMaxFeedBytes).
	MaxBytes int64
	// UserAgent is sent unless the source sets its own (default
	// DefaultUserAgent).
	UserAgent string
}

// NewFetcher returns a Fetcher with its own connection pool, sized for many
// feeds polled concurrently. Zero arguments select the defaults.
//
// Its Client refuses to connect to the addresses refusedAddr refuses,
// checked on the address dialed, after name resolution (guardDialer).
// Like http.DefaultTransport it takes a proxy from HTTPS_PROXY, HTTP_PROXY
// and NO_PROXY; through a proxy it is the proxy that dials the feed, so
// the check applies to the proxy's address, and to the feed's host by
// name only.
func NewFetcher(timeout time.Duration, maxBytes int64) *Fetcher {
	// http.DefaultTransport's dialer settings.
	return newFetcher(timeout, maxBytes, &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
}

// newFetcher is NewFetcher dialing with d (a test gives it a resolver of
// its own): Client with the address check, PrivateClient without.
func newFetcher(timeout time.Duration, maxBytes int64, d *net.Dialer) *Fetcher {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The default of 2 idle connections per host makes a pass over many feeds
	// on one host (a Zoom or Google tenant, or a loopback benchmark) reconnect
	// for nearly every fetch.
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 32
	open := tr.Clone()
	plain := *d
	open.DialContext = plain.DialContext
	public := tr.Clone()
	strict := *d
	public.DialContext = publicDialer(&strict).DialContext
	tr.DialContext = guardDialer(d).DialContext
	return &Fetcher{
		Client:        &http.Client{Transport: tr},
		PrivateClient: &http.Client{Transport: open},
		PublicClient:  &http.Client{Transport: public},
		Timeout:       timeout,
		MaxBytes:      maxBytes,
		UserAgent:     DefaultUserAgent,
	}
}

// TrustCAFile adds the PEM certificates of file to the roots the Fetcher
// trusts for https feeds, on top of the system's (schedule.ca_file: a
// TLS-inspecting proxy, a feed server with a private CA). The Fetcher's
// Client (and PrivateClient, if set) must use an *http.Transport, as
// NewFetcher's do.
func (f *Fetcher) TrustCAFile(file string) error {
	var trs []*http.Transport
	for i, c := range []*http.Client{f.Client, f.PrivateClient, f.PublicClient} {
		if c == nil && i > 0 {
			continue // no PrivateClient or PublicClient
		}
		var tr *http.Transport
		if c != nil {
			tr, _ = c.Transport.(*http.Transport)
		}
		if tr == nil {
			return errors.New("the fetcher's client has no *http.Transport")
		}
		trs = append(trs, tr)
	}
	pemData, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pemData) {
		return fmt.Errorf("CA file %s: no PEM certificates found", file)
	}
	for _, tr := range trs {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return nil
}

func (f *Fetcher) timeout() time.Duration {
	if f.Timeout > 0 {
		return f.Timeout
	}
	return DefaultFetchTimeout
}

func (f *Fetcher) maxBytes() int64 {
	if f.MaxBytes > 0 {
		return f.MaxBytes
	}
	return DefaultMaxFeedBytes
}

// Fetch gets one feed. Every error names the URL redacted by RedactURL and
// never contains the URL's secrets. A timeout wraps
// context.DeadlineExceeded, an oversized body ErrTooLarge, and a non-2xx
// answer a *StatusError.
func (f *Fetcher) Fetch(ctx context.Context, req FetchRequest) (FetchResult, error) {
	u, err := url.Parse(req.URL)
	if err != nil {
		// url.Parse's error quotes the whole URL; keep only its reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return FetchResult{}, fetchError(req.URL, fmt.Errorf("invalid URL: %w", err))
	}
	switch u.Scheme {
	case "http", "https":
		return f.fetchHTTP(ctx, u, req)
	case "file":
		if req.PublicOnly {
			return FetchResult{}, fetchError(req.URL, fmt.Errorf("%w: a file URL reads the worker's own files", ErrRefusedAddress))
		}
		return f.fetchFile(ctx, u, req)
	default:
		return FetchResult{}, fetchError(req.URL, fmt.Errorf("unsupported scheme %q (want https, http or file)", u.Scheme))
	}
}

func (f *Fetcher) fetchHTTP(ctx context.Context, u *url.URL, req FetchRequest) (FetchResult, error) {
	switch {
	case req.PublicOnly:
		if err := checkPublicHost(u.Hostname()); err != nil {
			return FetchResult{}, fetchError(req.URL, err)
		}
		if f.PublicClient == nil {
			return FetchResult{}, fetchError(req.URL, fmt.Errorf("%w: this fetcher has no client for public addresses only", ErrRefusedAddress))
		}
	case !req.AllowPrivate:
		if err := checkHost(u.Hostname()); err != nil {
			return FetchResult{}, fetchError(req.URL, allowPrivateHint(req.Name, err))
		}
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()

	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, req.URL, nil)
	if err != nil {
		return FetchResult{}, f.httpError(parent, ctx, req, err)
	}
	ua := f.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	hreq.Header.Set("User-Agent", ua)
	hreq.Header.Set("Accept", "text/calendar, text/plain;q=0.9, */*;q=0.8")
	for k, v := range req.Headers {
		if http.CanonicalHeaderKey(k) == "Host" {
			hreq.Host = v
			continue
		}
		hreq.Header.Set(k, v)
	}
	conditional := false
	if req.Prev.ETag != "" {
		hreq.Header.Set("If-None-Match", req.Prev.ETag)
		conditional = true
	}
	if req.Prev.LastModified != "" {
		hreq.Header.Set("If-Modified-Since", req.Prev.LastModified)
		conditional = true
	}

	client := http.DefaultClient
	if f.Client != nil {
		client = f.Client
	}
	switch {
	case req.PublicOnly:
		client = f.PublicClient
	case req.AllowPrivate && f.PrivateClient != nil:
		client = f.PrivateClient
	}
	c := *client // shallow copy: shares the Transport and its pool
	c.CheckRedirect = redirectPolicy(req.Headers, req.AllowPrivate && !req.PublicOnly, req.PublicOnly)

	resp, err := c.Do(hreq)
	if err != nil {
		return FetchResult{}, f.httpError(parent, ctx, req, err)
	}
	defer resp.Body.Close()

	res := FetchResult{Status: resp.StatusCode}
	switch {
	case resp.StatusCode == http.StatusNotModified:
		drain(resp.Body)
		if !conditional {
			return res, fetchError(req.URL, errors.New("304 Not Modified to an unconditional request"))
		}
		res.NotModified = true
		res.Hash = req.PrevHash
		res.Validators = req.Prev
		// A 304 carries the validators a 200 would have (RFC 9110 §15.4.5).
		if v := resp.Header.Get("ETag"); v != "" {
			res.Validators.ETag = v
		}
		if v := resp.Header.Get("Last-Modified"); v != "" {
			res.Validators.LastModified = v
		}
		return res, nil
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		drain(resp.Body)
		return res, fetchError(req.URL, &StatusError{Code: resp.StatusCode, Status: resp.Status})
	}

	limit := f.maxBytes()
	if resp.ContentLength > limit {
		return res, fetchError(req.URL, fmt.Errorf("Content-Length %d exceeds %d bytes: %w", resp.ContentLength, limit, ErrTooLarge))
	}
	body, err := readLimited(resp.Body, limit, resp.ContentLength)
	if err != nil {
		return res, f.httpError(parent, ctx, req, err)
	}
	res.Validators = Validators{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
	res.Hash = sha256.Sum256(body)
	if req.PrevHash != ([32]byte{}) && res.Hash == req.PrevHash {
		res.NotModified = true
		return res, nil
	}
	res.Body = body
	return res, nil
}

// httpError turns an error from the client or the body read into a fetch
// error without the URL's secrets. net/http returns a *url.Error that quotes
// the full (possibly redirected) URL; it is taken apart, not wrapped, so
// that not even errors.As can reach the URL. A refused address gets the
// hint to set allow_private.
func (f *Fetcher) httpError(parent, ctx context.Context, req FetchRequest, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fetchError(req.URL, fmt.Errorf("timed out after %s: %w", f.timeout(), context.DeadlineExceeded))
	}
	return fetchError(req.URL, allowPrivateHint(req.Name, err))
}

// fetchError wraps err as "fetch <redacted URL>: <err>". The message of err
// is scrubbed of every URL in it and of the secret parts of raw, in case an
// inner error (a bad Location header, say) quotes one.
func fetchError(raw string, err error) error {
	return fmt.Errorf("fetch %s: %w", RedactURL(raw), &scrubbedError{err: err, msg: scrub(err.Error(), raw)})
}

type scrubbedError struct {
	err error
	msg string
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

func scrub(msg, raw string) string {
	msg = urlInText.ReplaceAllStringFunc(msg, RedactURL)
	if u, err := url.Parse(raw); err == nil {
		pw, _ := u.User.Password()
		for _, secret := range []string{u.RawQuery, u.Fragment, u.User.String(), u.User.Username(), pw} {
			if len(secret) >= 4 {
				msg = strings.ReplaceAll(msg, secret, "<redacted>")
			}
		}
	}
	return msg
}

// redirectPolicy follows up to maxRedirects redirects. On a redirect to
// another origin it drops the source's configured headers: net/http itself
// only strips Authorization and Cookie, and only when the domain changes,
// but a feed's custom header (X-Api-Key, Private-Token…) is as much a
// credential. Unless allowPrivate, a redirect to a host checkHost refuses
// is not followed.
func redirectPolicy(headers map[string]string, allowPrivate, publicOnly bool) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		if publicOnly {
			if err := checkPublicHost(req.URL.Hostname()); err != nil {
				return fmt.Errorf("redirect to %s: %w", RedactURL(req.URL.String()), err)
			}
		}
		if !allowPrivate {
			if err := checkHost(req.URL.Hostname()); err != nil {
				return fmt.Errorf("redirect to %s: %w", RedactURL(req.URL.String()), err)
			}
		}
		first := via[0].URL
		if req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
			for k := range headers {
				req.Header.Del(k)
			}
			req.Header.Del("Authorization")
			req.Header.Del("Cookie")
		}
		return nil
	}
}

// readLimited reads r to EOF, failing with ErrTooLarge once more than limit
// bytes arrive. hint (a Content-Length, or -1) sizes the buffer so that a
// body of known length is read without regrowing.
func readLimited(r io.Reader, limit, hint int64) ([]byte, error) {
	n := int64(512)
	if hint >= 0 && hint < limit {
		n = hint + 1 // +1: room to see EOF without growing
	}
	buf := make([]byte, 0, n)
	r = io.LimitReader(r, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if int64(len(buf)) > limit {
			return nil, fmt.Errorf("body exceeds %d bytes: %w", limit, ErrTooLarge)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// drain reads a little of an unwanted body so that the connection can be
// reused.
func drain(r io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, maxDrain))
}

// fetchFile reads a file URL: file:///abs/path, file://localhost/abs/path,
// file:/abs/path, or file:relative/path (RFC 8089 has no relative form; it
// is accepted for examples and tests and resolved against the working
// directory). The size limit applies; the timeout does not, as a local read
// does not hang on a peer.
func (f *Fetcher) fetchFile(ctx context.Context, u *url.URL, req FetchRequest) (FetchResult, error) {
	if err := ctx.Err(); err != nil {
		return FetchResult{}, fetchError(req.URL, err)
	}
	var path string
	switch {
	case u.Opaque != "":
		p, err := url.PathUnescape(u.Opaque)
		if err != nil {
			return FetchResult{}, fetchError(req.URL, fmt.Errorf("invalid file path: %w", err))
		}
		path = p
	case u.Host != "" && u.Host != "localhost":
		return FetchResult{}, fetchError(req.URL, fmt.Errorf("file URL host %q not supported (use file:///abs/path or file:relative/path)", u.Host))
	default:
		path = u.Path
	}
	if path == "" {
		return FetchResult{}, fetchError(req.URL, errors.New("file URL has no path"))
	}

	file, err := os.Open(path)
	if err != nil {
		return FetchResult{}, fetchError(req.URL, err)
	}
	defer file.Close()
	limit := f.maxBytes()
	size := int64(-1)
	if fi, err := file.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
		if size > limit {
			return FetchResult{}, fetchError(req.URL, fmt.Errorf("file of %d bytes exceeds %d bytes: %w", size, limit, ErrTooLarge))
		}
	}
	body, err := readLimited(file, limit, size)
	if err != nil {
		return FetchResult{}, fetchError(req.URL, err)
	}
	res := FetchResult{Hash: sha256.Sum256(body)}
	if req.PrevHash != ([32]byte{}) && res.Hash == req.PrevHash {
		res.NotModified = true
		return res, nil
	}
	res.Body = body
	return res, nil
}

// RedactURL returns raw fit for logs, errors, metrics and the status page:
// userinfo, query and fragment are replaced by <redacted>, and so is any path
// segment that looks like a capability token (a run of 16 or more letters
// and digits mixing both, as in Google's /private-<token>/basic.ics or
// Outlook's published-calendar links). Input that does not parse as a URL
// keeps at most its scheme and host, so the secret never shows.
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return redactUnparsed(raw)
	}
	var b strings.Builder
	if u.Scheme != "" {
		b.WriteString(u.Scheme)
		b.WriteByte(':')
	}
	if u.Opaque != "" {
		// e.g. file:relative/path or mailto:x; anything before an @ may be
		// a credential.
		op := u.Opaque
		if i := strings.LastIndexByte(op, '@'); i >= 0 {
			op = "<redacted>" + op[i:]
		}
		b.WriteString(redactPath(op))
	} else {
		if u.Host != "" || u.User != nil || strings.HasPrefix(raw[len(u.Scheme):], "://") {
			b.WriteString("//")
		}
		if u.User != nil {
			b.WriteString("<redacted>@")
		}
		b.WriteString(u.Host)
		if strings.EqualFold(u.Scheme, "file") {
			// A local path is the operator's own, not a capability.
			b.WriteString(u.EscapedPath())
		} else {
			b.WriteString(redactPath(u.EscapedPath()))
		}
	}
	if u.RawQuery != "" {
		b.WriteString("?<redacted>")
	}
	if u.Fragment != "" {
		b.WriteString("#<redacted>")
	}
	return b.String()
}

var tokenRun = regexp.MustCompile(`[A-Za-z0-9]{16,}`)

func redactPath(p string) string {
	if !tokenRun.MatchString(p) {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		for _, run := range tokenRun.FindAllString(s, -1) {
			if strings.ContainsAny(run, "0123456789") && strings.IndexFunc(run, isLetter) >= 0 {
				segs[i] = strings.ReplaceAll(segs[i], run, "<redacted>")
			}
		}
	}
	return strings.Join(segs, "/")
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

var safeHost = regexp.MustCompile(`^[A-Za-z0-9.\-:\[\]]+$`)
var safeScheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*$`)

// redactUnparsed keeps the scheme and host of a URL that url.Parse refused,
// when both are plainly harmless, and nothing else.
func redactUnparsed(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !safeScheme.MatchString(scheme) {
		return "<redacted>"
	}
	host := rest
	if i := strings.IndexAny(host, "/?#"); i >= 0 {
		host = host[:i]
	}
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = host[i+1:]
	}
	if !safeHost.MatchString(host) {
		return scheme + "://<redacted>"
	}
	return scheme + "://" + host + "/<redacted>"
}
