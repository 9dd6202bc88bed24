package graphtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/calpresence/calpresence/presence"
)

// reply is an answer computed before it is written, so that the call is
// recorded (and state changed) before the client can see the response.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func jsonReply(status int, v any) reply {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return reply{status: status, header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}, body: b}
}

// odataError is Graph's error body: {"error":{"code","message","innerError"}}.
func odataError(status int, code, message string) reply {
	return jsonReply(status, map[string]any{
		"error": map[string]any{
			"code":    code,
			"message": message,
			"innerError": map[string]string{
				"date":       time.Now().UTC().Format("2006-01-02T15:04:05"),
				"request-id": newID(),
			},
		},
	})
}

// entraError is the OAuth 2.0 error body of the Entra token endpoint.
func entraError(status int, code, description string) reply {
	return jsonReply(status, map[string]any{
		"error":             code,
		"error_description": description,
		"error_codes":       aadstsCodes(description),
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          newID(),
		"correlation_id":    newID(),
	})
}

// aadstsCodes is Entra's error_codes: the number of the AADSTS code a
// description starts with ("AADSTS7000215: …" gives [7000215]).
func aadstsCodes(description string) []int {
	rest, ok := strings.CutPrefix(description, "AADSTS")
	if !ok {
		return []int{}
	}
	num, _, _ := strings.Cut(rest, ":")
	n, err := strconv.Atoi(num)
	if err != nil {
		return []int{}
	}
	return []int{n}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	c := Call{
		Time:   s.Now(),
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.Query(),
		Header: r.Header.Clone(),
		Body:   body,
	}
	c.Op, c.User = route(r.URL.Path)
	if c.Op == OpToken {
		c.Body = nil // secrets
		c.Header.Del("Authorization")
		if form, err := url.ParseQuery(string(body)); err == nil {
			c.User = form.Get("client_id")
			form.Del("client_secret")
			form.Del("client_assertion")
			c.Query = form
		}
	}
	if c.Op == OpSetPresence || c.Op == OpClearPresence {
		var f presenceBody
		if json.Unmarshal(body, &f) == nil {
			c.SessionID, c.Availability, c.Activity, c.ExpirationDuration = f.SessionID, f.Availability, f.Activity, f.ExpirationDuration
		}
	}
	if c.Op == OpReadPresences {
		var f idsBody
		if json.Unmarshal(body, &f) == nil {
			c.IDs = f.IDs
		}
	}
	if c.Op == OpListUsers {
		if addrs, _, err := parseFilter(r.URL.Query().Get("$filter")); err == nil && len(addrs) > 0 {
			c.User = addrs[0].value
			if len(c.User) > 5 && strings.EqualFold(c.User[:5], "smtp:") {
				c.User = c.User[5:]
			}
		}
	}

	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	// answered is false once the client gave up waiting (its timeout):
	// the call is still applied and recorded, as Graph may apply a call
	// whose answer came too late, but no answer is written. (An answer
	// written then, even an implicit 200, may still reach a client that
	// half-closed its connection, which would read it after its own
	// timeout.)
	answered := s.sleep(r, latency)

	var rp reply
	if f := s.takeFault(c.Op, c.User); f != nil {
		answered = answered && s.sleep(r, f.Delay)
		switch {
		case f.Reset:
			c.Fault = "reset"
			s.record(c)
			resetConn(w)
			return
		case f.Status != 0:
			c.Fault = "status"
			rp = faultReply(f)
		default:
			c.Fault = "delay"
		}
	}
	if rp.status == 0 {
		if limited, secs := s.rateLimited(c.Op); limited {
			c.Fault = "rate_limit"
			rp = odataError(http.StatusTooManyRequests, "TooManyRequests", "Too many requests.")
			rp.header.Set("Retry-After", strconv.Itoa(secs))
		}
	}
	if rp.status == 0 {
		rp = s.handle(c.Op, c.User, r, body)
	}
	c.Status = rp.status
	s.record(c)
	if !answered {
		panic(http.ErrAbortHandler)
	}

	for k, vs := range rp.header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(rp.body)))
	w.WriteHeader(rp.status)
	_, _ = w.Write(rp.body)
}

// route names the operation of a path and the user it addresses.
func route(path string) (op, user string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if op, ok := signinRoute(parts); ok {
		return op, ""
	}
	switch {
	case len(parts) == 4 && parts[1] == "v2.0" && parts[2] == ".well-known" && parts[3] == "openid-configuration":
		return OpOpenID, ""
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token":
		return OpToken, ""
	case len(parts) == 5 && parts[0] == "v1.0" && parts[1] == "users" && parts[3] == "presence" && parts[4] == "setPresence":
		return OpSetPresence, parts[2]
	case len(parts) == 5 && parts[0] == "v1.0" && parts[1] == "users" && parts[3] == "presence" && parts[4] == "clearPresence":
		return OpClearPresence, parts[2]
	case len(parts) == 5 && parts[0] == "v1.0" && parts[1] == "users" && parts[3] == "presence" && parts[4] == "setStatusMessage":
		return OpSetStatusMessage, parts[2]
	case len(parts) == 3 && parts[0] == "v1.0" && parts[1] == "communications" && parts[2] == "getPresencesByUserId":
		return OpReadPresences, ""
	case len(parts) == 3 && parts[0] == "v1.0" && parts[1] == "users":
		return OpGetUser, parts[2]
	case len(parts) == 2 && parts[0] == "v1.0" && parts[1] == "users":
		return OpListUsers, ""
	}
	return OpUnknown, ""
}

func (s *Server) handle(op, user string, r *http.Request, body []byte) reply {
	switch op {
	case OpOpenID:
		return s.openID(r)
	case OpToken:
		return s.token(r, body)
	case OpAuthorize:
		return s.authorizeCode(r)
	case OpKeys:
		return s.keys(r)
	case OpUnknown:
		return odataError(http.StatusNotFound, "UnknownError", "No HTTP resource was found that matches the request URI.")
	}
	// Graph.
	wantMethod := http.MethodGet
	switch op {
	case OpSetPresence, OpClearPresence, OpSetStatusMessage, OpReadPresences:
		wantMethod = http.MethodPost
	}
	if r.Method != wantMethod {
		return odataError(http.StatusMethodNotAllowed, "Request_BadRequest", "The HTTP method '"+r.Method+"' is not allowed.")
	}
	clientID, rp, ok := s.authorize(r)
	if !ok {
		return rp
	}
	switch op {
	case OpSetPresence:
		return s.setPresence(clientID, user, r, body)
	case OpClearPresence:
		return s.clearPresence(user, r, body)
	case OpSetStatusMessage:
		return s.setStatusMessage(user, r, body)
	case OpReadPresences:
		return s.readPresences(r, body)
	case OpGetUser:
		return s.getUser(user, r)
	default:
		return s.listUsers(r)
	}
}

// authorize checks the bearer token and returns the client id it was
// issued to.
func (s *Server) authorize(r *http.Request) (string, reply, bool) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return "", odataError(http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty."), false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ti, ok := s.tokens[tok]
	switch {
	case !ok:
		return "", odataError(http.StatusUnauthorized, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed."), false
	case ti.revoked:
		return "", odataError(http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."), false
	case !s.nowLocked().Before(ti.expires):
		return "", odataError(http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."), false
	}
	return ti.clientID, reply{}, true
}

type presenceBody struct {
	SessionID          string `json:"sessionId"`
	Availability       string `json:"availability"`
	Activity           string `json:"activity"`
	ExpirationDuration string `json:"expirationDuration"`
}

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func checkJSON(r *http.Request) (reply, bool) {
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return odataError(http.StatusUnsupportedMediaType, "BadRequest", "Content-Type must be application/json (got "+strconv.Quote(ct)+")."), false
	}
	return reply{}, true
}

func (s *Server) setPresence(clientID, user string, r *http.Request, body []byte) reply {
	if rp, ok := checkJSON(r); !ok {
		return rp
	}
	var b presenceBody
	if err := decodeStrict(body, &b); err != nil {
		return odataError(http.StatusBadRequest, "BadRequest", "Invalid request body: "+err.Error())
	}
	if b.SessionID == "" {
		return odataError(http.StatusBadRequest, "BadRequest", "sessionId is required.")
	}
	if b.SessionID != clientID {
		return odataError(http.StatusBadRequest, "BadRequest", "sessionId must be the application id of the caller.")
	}
	if !presence.Allowed(b.Availability, b.Activity) {
		return odataError(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Unsupported combination of availability %q and activity %q.", b.Availability, b.Activity))
	}
	d := presence.MinLease // Graph's default when expirationDuration is absent
	if b.ExpirationDuration != "" {
		var err error
		if d, err = ParseISODuration(b.ExpirationDuration); err != nil {
			return odataError(http.StatusBadRequest, "BadRequest", "Invalid expirationDuration: "+err.Error())
		}
	}
	if d < presence.MinLease || d > presence.MaxLease {
		return odataError(http.StatusBadRequest, "BadRequest", fmt.Sprintf("expirationDuration %s is outside PT5M..PT4H.", b.ExpirationDuration))
	}
	s.mu.Lock()
	now := s.nowLocked()
	s.sessions[sessionKey{strings.ToLower(user), b.SessionID}] = Session{
		User: user, SessionID: b.SessionID,
		Availability: b.Availability, Activity: b.Activity,
		Expiration: d, Set: now, Expires: now.Add(d),
	}
	s.mu.Unlock()
	return reply{status: http.StatusOK}
}

func (s *Server) clearPresence(user string, r *http.Request, body []byte) reply {
	if rp, ok := checkJSON(r); !ok {
		return rp
	}
	var b struct {
		SessionID string `json:"sessionId"`
	}
	if err := decodeStrict(body, &b); err != nil {
		return odataError(http.StatusBadRequest, "BadRequest", "Invalid request body: "+err.Error())
	}
	if b.SessionID == "" {
		return odataError(http.StatusBadRequest, "BadRequest", "sessionId is required.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := sessionKey{strings.ToLower(user), b.SessionID}
	se, ok := s.sessions[k]
	if !ok || !s.nowLocked().Before(se.Expires) {
		delete(s.sessions, k)
		return odataError(http.StatusNotFound, "NotFound", "The presence session was not found.")
	}
	delete(s.sessions, k)
	return reply{status: http.StatusOK}
}

func userJSON(u User, sel []string) map[string]any {
	all := map[string]any{
		"id":                u.ID,
		"userPrincipalName": u.UserPrincipalName,
		"mail":              u.Mail,
		"proxyAddresses":    append([]string{}, u.ProxyAddresses...),
	}
	if len(sel) == 0 {
		return all
	}
	out := map[string]any{}
	for _, f := range sel {
		if v, ok := all[f]; ok {
			out[f] = v
		}
	}
	return out
}

func selectFields(r *http.Request) []string {
	v := r.URL.Query().Get("$select")
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

func (s *Server) getUser(key string, r *http.Request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if strings.EqualFold(u.ID, key) || strings.EqualFold(u.UserPrincipalName, key) {
			m := userJSON(u, selectFields(r))
			m["@odata.context"] = "https://" + r.Host + "/v1.0/$metadata#users/$entity"
			return jsonReply(http.StatusOK, m)
		}
	}
	return odataError(http.StatusNotFound, "Request_ResourceNotFound",
		fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", key))
}

func (s *Server) listUsers(r *http.Request) reply {
	q := r.URL.Query()
	clauses, lambda, err := parseFilter(q.Get("$filter"))
	if err != nil {
		return odataError(http.StatusBadRequest, "BadRequest", "Invalid filter clause: "+err.Error())
	}
	if lambda && (r.Header.Get("ConsistencyLevel") != "eventual" || q.Get("$count") != "true") {
		return odataError(http.StatusBadRequest, "Request_UnsupportedQuery",
			"Unsupported or invalid query filter clause specified for property 'proxyAddresses' of resource 'User'.")
	}
	s.mu.Lock()
	var value []map[string]any
	for _, u := range s.users {
		if len(clauses) == 0 || matchAny(u, clauses) {
			value = append(value, userJSON(u, selectFields(r)))
		}
	}
	s.mu.Unlock()
	if value == nil {
		value = []map[string]any{}
	}
	out := map[string]any{
		"@odata.context": "https://" + r.Host + "/v1.0/$metadata#users(id)",
		"value":          value,
	}
	if q.Get("$count") == "true" {
		out["@odata.count"] = len(value)
	}
	return jsonReply(http.StatusOK, out)
}

func matchAny(u User, clauses []clause) bool {
	for _, c := range clauses {
		switch c.field {
		case "mail":
			if strings.EqualFold(u.Mail, c.value) {
				return true
			}
		case "userprincipalname":
			if strings.EqualFold(u.UserPrincipalName, c.value) {
				return true
			}
		case "proxyaddresses":
			for _, p := range u.ProxyAddresses {
				if strings.EqualFold(p, c.value) {
					return true
				}
			}
		}
	}
	return false
}

// clause is one `field eq 'value'` of a filter.
type clause struct{ field, value string }

// parseFilter understands the filters calpresence sends: clauses
// `mail eq '...'`, `userPrincipalName eq '...'` and
// `proxyAddresses/any(p:p eq '...')` joined by `or`. lambda reports
// whether any() was used. For proxyAddresses, the value keeps its "smtp:"
// prefix; for the recorded Call.User the prefix is dropped by the caller.
func parseFilter(f string) (clauses []clause, lambda bool, err error) {
	rest := strings.TrimSpace(f)
	for rest != "" {
		var c clause
		lower := strings.ToLower(rest)
		switch {
		case strings.HasPrefix(lower, "mail eq "):
			c.field, rest = "mail", rest[len("mail eq "):]
		case strings.HasPrefix(lower, "userprincipalname eq "):
			c.field, rest = "userprincipalname", rest[len("userprincipalname eq "):]
		case strings.HasPrefix(lower, "proxyaddresses/any("):
			lambda = true
			c.field, rest = "proxyaddresses", rest[len("proxyaddresses/any("):]
			v, r, ok := strings.Cut(rest, ":")
			if !ok || v == "" {
				return nil, false, fmt.Errorf("bad lambda in %q", f)
			}
			if !strings.HasPrefix(r, v+" eq ") {
				return nil, false, fmt.Errorf("bad lambda body in %q", f)
			}
			rest = r[len(v+" eq "):]
		default:
			return nil, false, fmt.Errorf("unsupported clause %q", rest)
		}
		v, r, err := quoted(rest)
		if err != nil {
			return nil, false, err
		}
		c.value, rest = v, r
		if c.field == "proxyaddresses" {
			if !strings.HasPrefix(rest, ")") {
				return nil, false, fmt.Errorf("unclosed lambda in %q", f)
			}
			rest = rest[1:]
		}
		clauses = append(clauses, c)
		rest = strings.TrimSpace(rest)
		if rest == "" {
			break
		}
		r, ok := strings.CutPrefix(strings.ToLower(rest[:min(3, len(rest))]), "or ")
		if !ok || r != "" {
			return nil, false, fmt.Errorf("expected 'or' at %q", rest)
		}
		rest = strings.TrimSpace(rest[3:])
	}
	return clauses, lambda, nil
}

// quoted reads an OData string literal: single quotes around it, a quote
// inside doubled.
func quoted(s string) (value, rest string, err error) {
	if !strings.HasPrefix(s, "'") {
		return "", "", fmt.Errorf("expected a quoted string at %q", s)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '\'' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		return b.String(), s[i+1:], nil
	}
	return "", "", fmt.Errorf("unterminated string %q", s)
}
