package graphtest

import (
	"net"
	"net/http"
	"strings"
	"time"
)

// Fault answers matching calls differently from the fake's normal
// behaviour. Inject it with Server.Inject.
type Fault struct {
	// Op restricts the fault to one operation (Op* constants). Empty
	// matches every Graph operation (setPresence, clearPresence,
	// setStatusMessage, getPresencesByUserId, getUser, listUsers) but not
	// the Entra ones (openid, token): name those explicitly.
	Op string
	// User restricts the fault to one user (case-insensitive), as in
	// Call.User.
	User string
	// Times is how many matching calls the fault answers; 0 means 1, a
	// negative value means until ClearFaults or Reset.
	Times int

	// Delay is waited before answering (latency). With Status 0 and Reset
	// false, the call is then handled normally.
	Delay time.Duration
	// Reset hijacks the connection and closes it with a TCP RST, without
	// an answer.
	Reset bool
	// Status answers with this HTTP status, Header and Body.
	Status int
	Header http.Header
	// Body is sent as is with ContentType. When both are empty, the body is
	// a Graph ODataError for Status.
	Body        string
	ContentType string
}

// Inject adds a fault. Faults are consulted in the order injected; the first
// one that matches a call answers it.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Times == 0 {
		f.Times = 1
	}
	s.faults = append(s.faults, &f)
}

// FailNext answers the next n Graph calls of op (any op when empty) with
// status and, when retryAfter is not empty, a Retry-After header (seconds or
// an HTTP date).
func (s *Server) FailNext(op string, n, status int, retryAfter string) {
	f := Fault{Op: op, Times: n, Status: status}
	if retryAfter != "" {
		f.Header = http.Header{"Retry-After": {retryAfter}}
	}
	s.Inject(f)
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// SetLatency delays every answer (Entra and Graph) by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetRateLimit answers presence writes (setPresence, clearPresence,
// setStatusMessage) beyond limit per window with 429 and a Retry-After of
// the rest of the window, as Graph does (10,000 per 30 s per app per
// tenant). limit 0 disables it. Reads have their own: SetReadRateLimit.
func (s *Server) SetRateLimit(limit int, window time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeLimit = rateWindow{limit: limit, window: window}
}

// SetReadRateLimit answers getPresencesByUserId calls beyond limit per
// window with 429 and a Retry-After of the rest of the window, as Graph
// does (1,500 per 30 s per app per tenant), counted apart from the writes:
// reads throttled leave the writes alone and the other way round. limit 0
// disables it.
func (s *Server) SetReadRateLimit(limit int, window time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readLimit = rateWindow{limit: limit, window: window}
}

// takeFault returns the fault for a call, consuming one of its Times.
func (s *Server) takeFault(op, user string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	graphOp := op != OpOpenID && op != OpToken
	for i, f := range s.faults {
		if f.Op == "" && !graphOp || f.Op != "" && f.Op != op {
			continue
		}
		if f.User != "" && !strings.EqualFold(f.User, user) {
			continue
		}
		out := *f
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		return &out
	}
	return nil
}

// rateWindow is one of Graph's budgets: limit calls per fixed window.
type rateWindow struct {
	limit  int
	window time.Duration
	start  time.Time
	count  int
}

// rateLimited reports whether a call of op exceeds its budget (none for
// ops Graph's presence limits do not count) and, if so, the seconds until
// the window ends.
func (s *Server) rateLimited(op string) (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rw *rateWindow
	switch op {
	case OpSetPresence, OpClearPresence, OpSetStatusMessage:
		rw = &s.writeLimit
	case OpReadPresences:
		rw = &s.readLimit
	default:
		return false, 0
	}
	if rw.limit <= 0 || rw.window <= 0 {
		return false, 0
	}
	now := s.nowLocked()
	if rw.start.IsZero() || !now.Before(rw.start.Add(rw.window)) {
		rw.start, rw.count = now, 0
	}
	if rw.count < rw.limit {
		rw.count++
		return false, 0
	}
	left := rw.start.Add(rw.window).Sub(now)
	secs := int((left + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return true, secs
}

// sleep waits d, or less if the request is cancelled or the server
// closes; it reports whether it waited all of d.
func (s *Server) sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.done:
	}
	return false
}

// resetConn closes the client's connection abruptly (RST where possible).
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // HTTP/2: abort the stream instead
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if nc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		raw = nc.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = raw.Close()
}

// faultReply is the answer a status fault gives.
func faultReply(f *Fault) reply {
	var rp reply
	if f.Body == "" && f.ContentType == "" {
		rp = odataError(f.Status, codeFor(f.Status), http.StatusText(f.Status))
	} else {
		rp = reply{status: f.Status, header: http.Header{}, body: []byte(f.Body)}
		if f.ContentType != "" {
			rp.header.Set("Content-Type", f.ContentType)
		}
	}
	for k, vs := range f.Header {
		for _, v := range vs {
			rp.header.Add(k, v)
		}
	}
	return rp
}

// codeFor is the Graph error code typically sent with status.
func codeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BadRequest"
	case http.StatusUnauthorized:
		return "InvalidAuthenticationToken"
	case http.StatusForbidden:
		return "Forbidden"
	case http.StatusNotFound:
		return "NotFound"
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	case http.StatusServiceUnavailable:
		return "ServiceNotAvailable"
	case http.StatusGatewayTimeout:
		return "GatewayTimeout"
	}
	if status >= 500 {
		return "InternalServerError"
	}
	return "UnknownError"
}
