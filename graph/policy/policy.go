package policy

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/calpresence/calpresence/presence"
)

// The Graph operations calpresence makes, as named in *presence.Error.Op,
// in the op label of calpresence_graph_requests_total and
// calpresence_graph_retry_after_seconds, and as Classify's first argument.
const (
	OpSetPresence        = "setPresence"
	OpClearPresence      = "clearPresence"
	OpSetStatusMessage   = "setStatusMessage"
	OpClearStatusMessage = "clearStatusMessage" // setStatusMessage with an empty message
	OpReadPresences      = "getPresencesByUserId"
	OpResolveUser        = "resolveUser" // GET /users/{address} or a $filter on mail and proxyAddresses
	OpToken              = "token"       // a token request to Entra (the authority)
)

// Ops lists every operation Classify knows, for tests and docs.
var Ops = []string{OpSetPresence, OpClearPresence, OpSetStatusMessage, OpClearStatusMessage,
	OpReadPresences, OpResolveUser, OpToken}

// OK is Classify's verdict for an answer that needs nothing more: the
// call did what was asked. The other verdicts are presence.Kind's values,
// which *presence.Error carries to the engine and the directory:
//
//   - presence.Retry: "retry after": the same call may succeed later; it
//     is tried again after the answer's Retry-After or else Backoff.
//   - presence.Permanent: "hold": the same call will not succeed while
//     nothing changes; a set is held back until its span ends (not
//     retried in a tight loop), a lookup marks the address unknown (and
//     checks it again days later).
//   - presence.NotFound: "gone": what the call names does not exist: a
//     clear finds no session (done: the presence is already gone), a set
//     or a lookup finds no such user.
//   - presence.Unauthorized: the token was refused even after one
//     refresh, or Entra refused to issue one: a configuration or consent
//     problem that the next token request does not fix by itself; it is
//     retried with back-off (a secret file may be replaced meanwhile).
const OK presence.Kind = 0

// Classify decides what becomes of a Graph answer of status to op. It is
// the only place that maps a status to a verdict: graph's middleware
// retries at once (within a call) the answers it calls Retry whose cause
// passes in seconds (RetryWithin), and the engine and the directory act
// on the verdict the client returns.
//
// The rules, from Graph's documentation (the setPresence, clearPresence
// and setStatusMessage references, "Microsoft Graph error responses" and
// "Microsoft Graph throttling guidance") and the daemon's needs:
//
//   - 2xx: OK.
//   - 408 (request timeout), 409 (a concurrent change to the same
//     object), 429 (throttled: Graph says so with Retry-After), 500, 502,
//     503, 504 and every other 5xx: Retry, Retry-After honoured ("wait
//     the number of seconds specified in the Retry-After header"; without
//     one, exponential back-off).
//   - 401: Unauthorized (the client has already fetched a new token once).
//   - 404: NotFound. clearPresence: "if the presence session doesn't
//     exist, this method returns a 404": the session is gone, as the
//     clear wanted.
//   - 400, 403, 412 and every other 4xx: Permanent. A set refused for a
//     bad pair (400) or a missing Presence.ReadWrite.All (403) is refused
//     again until something changes: it is held until its span ends.
//
// Exceptions by operation:
//
//   - clearPresence: what would be Permanent is Retry. A clear is never
//     given up: the lease it ends would keep the person Busy, and a 403
//     while an admin changes consent passes; it is tried again with
//     back-off until the lease has run out. (A status message's clear is
//     not: a refused one is given up, and the message ends at the expiry
//     it was set with.)
//   - getPresencesByUserId: a 404 is Permanent (the endpoint, not a
//     person, is missing: a national cloud without it); the read-back
//     tries again at its next round.
//   - resolveUser: a 403 is Retry: the app lacks User.Read.All, which says
//     nothing about the address; its people wait and it is looked up again
//     with back-off, not marked unknown.
//   - token: Entra answers a refused credential with 400 or 401 (invalid
//     client, secret or assertion) and an unknown tenant with 400: every
//     4xx but 408 and 429 is Unauthorized; 408, 429 and 5xx are Retry.
func Classify(op string, status int) presence.Kind {
	switch {
	case status >= 200 && status < 300:
		return OK
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return presence.Retry
	case op == OpToken:
		return presence.Unauthorized
	case status == http.StatusConflict:
		return presence.Retry
	case status == http.StatusUnauthorized:
		return presence.Unauthorized
	case status == http.StatusNotFound && op != OpReadPresences:
		return presence.NotFound
	case op == OpClearPresence:
		return presence.Retry
	case op == OpResolveUser && status == http.StatusForbidden:
		return presence.Retry
	}
	return presence.Permanent
}

// RetryWithin reports whether graph's middleware retries an answer of
// status to op at once, within the call: Classify calls it Retry and the
// cause passes in seconds (408, 409, 429, 5xx). A refused clear or lookup
// (a 4xx that Classify also calls Retry) goes back to the caller instead:
// a refusal does not pass in seconds, and the caller tries again after
// its back-off rather than spend the budget on it now.
func RetryWithin(op string, status int) bool {
	if Classify(op, status) != presence.Retry {
		return false
	}
	return status == http.StatusRequestTimeout || status == http.StatusConflict ||
		status == http.StatusTooManyRequests || status >= 500
}

// RetryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3). A date in the past means no wait; ok is false when
// there is no usable header.
func RetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || secs > 1e6 {
			return 0, false
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// Backoff is the jittered exponential delay between tries of a failed
// Graph call (and of a token request): Base, 2·Base, 4·Base … at most Max,
// each drawn between half and all of it, so that callers that failed
// together do not come back together.
type Backoff struct {
	Base, Max time.Duration
}

// DefaultBackoff is the back-off of everything that retries across calls
// (the executor, the directory, the read-back, the authenticate loop): 1 s,
// 2 s, 4 s … 5 min. Graph's middleware uses the same curve from its own
// base within one call (graph.WithRetry).
var DefaultBackoff = Backoff{Base: time.Second, Max: 5 * time.Minute}

// Delay is the wait before try tries+1, after tries failures (tries ≥ 1).
func (b Backoff) Delay(tries int) time.Duration {
	d := b.Base << min(max(tries-1, 0), 20)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	return d/2 + rand.N(d/2+1)
}

// Delay is DefaultBackoff.Delay.
func Delay(tries int) time.Duration { return DefaultBackoff.Delay(tries) }

// Wait is how long to wait before trying a call again that failed with
// err after tries failures: the Retry-After Graph gave, or else Delay.
func Wait(err error, tries int) time.Duration {
	var pe *presence.Error
	if errors.As(err, &pe) && pe.RetryAfter > 0 {
		return pe.RetryAfter
	}
	return Delay(tries)
}
