package graphtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Operations of the sign-in side of the fake Entra (Call.Op).
const (
	OpAuthorize = "authorize" // GET /{tenant}/oauth2/v2.0/authorize
	OpKeys      = "keys"      // GET /{tenant}/discovery/v2.0/keys
)

// codeLifetime is how long an authorization code can be redeemed. Entra
// documents "about 10 minutes" (Microsoft identity platform, "OAuth 2.0
// authorization code flow").
const codeLifetime = 10 * time.Minute

// IDTokenFault makes the fake issue ID tokens a careful client refuses.
// The zero value issues good tokens.
type IDTokenFault struct {
	// Expired issues tokens whose exp lies an hour in the past.
	Expired bool
	// Nonce, if set, replaces the nonce the authorize request asked for.
	Nonce string
	// Audience, if set, replaces the client id in aud.
	Audience string
}

// signin is the fake's OpenID Connect state: the signing key it publishes,
// the person the authorize endpoint signs in, the codes it issued.
type signin struct {
	keyOnce sync.Once
	key     *rsa.PrivateKey
	kid     string

	mu        sync.Mutex
	user      signedIn
	redirects []string
	codes     map[string]*authCode
	fault     IDTokenFault
	roles     []string // nil: opaque access tokens for client credentials
	domain    string   // WithTenantDomain
}

// WithTenantDomain lets the tenant be named by a verified domain (e.g.
// contoso.onmicrosoft.com) in the discovery URL, as Entra does: the
// document it answers names the tenant by its GUID (issuer, endpoints).
func WithTenantDomain(domain string) Option {
	return func(s *Server) { s.signin.domain = domain }
}

// knownTenant reports whether tenant names the fake's tenant: its id or,
// for discovery, the WithTenantDomain name.
func (s *Server) knownTenant(tenant string) bool {
	return strings.EqualFold(tenant, s.tenantID) || s.signin.domain != "" && strings.EqualFold(tenant, s.signin.domain)
}

type signedIn struct{ oid, upn, name, tenant string }

type authCode struct {
	clientID, redirectURI string
	challenge, nonce      string
	scope                 string
	user                  signedIn
	expires               time.Time
	used                  bool
}

// signingKey generates the fake's token signing key once.
func (s *Server) signingKey() (*rsa.PrivateKey, string) {
	si := &s.signin
	si.keyOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			s.tb.Fatalf("graphtest: generate signing key: %v", err)
		}
		sum := sha256.Sum256(key.PublicKey.N.Bytes())
		si.key, si.kid = key, base64.RawURLEncoding.EncodeToString(sum[:12])
	})
	return si.key, si.kid
}

// SignInAs makes the authorize endpoint sign in this person without a
// prompt (as Entra does for someone already signed in who has consented):
// it redirects back at once with a code whose ID token carries oid, upn
// (preferred_username) and tenant (tid and the issuer). A tenant other than
// TenantID is an account from another organisation; its tokens are signed
// with the same keys, as Entra's are.
func (s *Server) SignInAs(oid, upn, tenant string) {
	name, _, _ := strings.Cut(upn, "@")
	s.signin.mu.Lock()
	defer s.signin.mu.Unlock()
	s.signin.user = signedIn{oid: oid, upn: upn, name: name, tenant: tenant}
}

// AddRedirectURI registers a redirect URI of the application (Entra:
// Authentication → Web → Redirect URIs). The authorize endpoint refuses
// any other, as Entra does (AADSTS50011).
func (s *Server) AddRedirectURI(uri string) {
	s.signin.mu.Lock()
	defer s.signin.mu.Unlock()
	s.signin.redirects = append(s.signin.redirects, uri)
}

// SetIDTokenFault shapes the ID tokens issued from now on; the zero value
// restores good tokens.
func (s *Server) SetIDTokenFault(f IDTokenFault) {
	s.signin.mu.Lock()
	defer s.signin.mu.Unlock()
	s.signin.fault = f
}

// SetAppRoles makes client-credentials access tokens JWTs signed with the
// fake's key (as Entra's are) whose roles claim lists roles, the
// application permissions an administrator granted (e.g.
// "Presence.ReadWrite.All", "User.Read.All"). Without it, access tokens
// are opaque strings. Graph calls accept both.
func (s *Server) SetAppRoles(roles ...string) {
	s.signin.mu.Lock()
	defer s.signin.mu.Unlock()
	s.signin.roles = append([]string{}, roles...)
}

// Issuer is the issuer of the fake's ID tokens for tenant:
// AuthorityHost()+tenant+"/v2.0", as Entra's v2.0 tokens carry
// https://login.microsoftonline.com/{tid}/v2.0.
func (s *Server) Issuer(tenant string) string { return s.AuthorityHost() + tenant + "/v2.0" }

// signinRoute names the sign-in operations among the path's parts.
func signinRoute(parts []string) (string, bool) {
	switch {
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "authorize":
		return OpAuthorize, true
	case len(parts) == 4 && parts[1] == "discovery" && parts[2] == "v2.0" && parts[3] == "keys":
		return OpKeys, true
	}
	return "", false
}

// keys answers the JWKS document with the fake's one signing key.
func (s *Server) keys(r *http.Request) reply {
	if r.Method != http.MethodGet {
		return entraError(http.StatusMethodNotAllowed, "invalid_request", "GET only")
	}
	key, kid := s.signingKey()
	return jsonReply(http.StatusOK, map[string]any{"keys": []map[string]any{{
		"kty": "RSA",
		"use": "sig",
		"kid": kid,
		"n":   base64.RawURLEncoding.EncodeToString(key.PublicKey.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.PublicKey.E)).Bytes()),
	}}})
}

// pageReply is an HTML-less plain-text error page, what a person sees when
// the authority refuses a request outright.
func pageReply(status int, text string) reply {
	return reply{status: status, header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, body: []byte(text + "\n")}
}

// authorizeCode answers the authorize endpoint for response_type=code:
// checks the request as Entra does (tenant, client, registered redirect
// URI, openid scope, PKCE with S256), then signs in the SignInAs person
// and redirects back with a single-use code and the state.
func (s *Server) authorizeCode(r *http.Request) reply {
	if r.Method != http.MethodGet {
		return pageReply(http.StatusMethodNotAllowed, "GET only")
	}
	q := r.URL.Query()
	if tenant := tenantOf(r.URL.Path); !strings.EqualFold(tenant, s.tenantID) {
		return pageReply(http.StatusBadRequest, fmt.Sprintf("AADSTS90002: Tenant '%s' not found.", tenant))
	}
	if q.Get("client_id") != s.clientID {
		return pageReply(http.StatusBadRequest, fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory.", q.Get("client_id")))
	}
	redirect := q.Get("redirect_uri")
	si := &s.signin
	si.mu.Lock()
	registered := slices.Contains(si.redirects, redirect)
	user := si.user
	si.mu.Unlock()
	if !registered {
		return pageReply(http.StatusBadRequest, fmt.Sprintf("AADSTS50011: The redirect URI '%s' specified in the request does not match the redirect URIs configured for the application '%s'.", redirect, s.clientID))
	}
	back := func(params url.Values) reply {
		u, _ := url.Parse(redirect)
		v := u.Query()
		for k, vs := range params {
			v[k] = vs
		}
		if st := q.Get("state"); st != "" {
			v.Set("state", st)
		}
		u.RawQuery = v.Encode()
		return reply{status: http.StatusFound, header: http.Header{"Location": {u.String()}}}
	}
	refuse := func(code, desc string) reply {
		return back(url.Values{"error": {code}, "error_description": {desc}})
	}
	switch {
	case q.Get("response_type") != "code":
		return refuse("unsupported_response_type", "AADSTS700054: response_type '"+q.Get("response_type")+"' is not enabled for the application.")
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		return refuse("invalid_request", "AADSTS900144: the openid scope is required for an ID token.")
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		return refuse("invalid_request", "AADSTS501491: graphtest requires PKCE with code_challenge_method S256.")
	case user.oid == "":
		return refuse("login_required", "AADSTS50058: graphtest: nobody is signed in (call SignInAs).")
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	code := "graphtest-code." + base64.RawURLEncoding.EncodeToString(b[:])
	si.mu.Lock()
	if si.codes == nil {
		si.codes = make(map[string]*authCode)
	}
	si.codes[code] = &authCode{
		clientID: s.clientID, redirectURI: redirect,
		challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), scope: q.Get("scope"),
		user: user, expires: s.Now().Add(codeLifetime),
	}
	si.mu.Unlock()
	return back(url.Values{"code": {code}})
}

// redeemCode answers the token endpoint's authorization_code grant: the
// client's secret or client assertion (checkAssertion), the code (single use: a second redemption is
// invalid_grant, as Entra's AADSTS54005), the same redirect_uri, and the
// PKCE code_verifier whose S256 hash is the challenge (RFC 7636 section
// 4.6). It answers an ID token signed with the fake's key.
func (s *Server) redeemCode(r *http.Request, form url.Values) reply {
	clientID, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		clientID, secret = u, p
	}
	if clientID != s.clientID {
		return entraError(http.StatusBadRequest, "unauthorized_client",
			fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory.", clientID))
	}
	switch {
	case form.Get("client_assertion") != "" && secret != "":
		return entraError(http.StatusBadRequest, "invalid_request", "AADSTS50027: JWT token is invalid or malformed: a request carries a client_secret or a client_assertion, not both.")
	case form.Get("client_assertion") != "":
		if rep, ok := s.checkAssertion(form, clientID, "https://"+r.Host+r.URL.Path); !ok {
			return rep
		}
	case secret == "":
		return entraError(http.StatusUnauthorized, "invalid_client",
			"AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	case subtle.ConstantTimeCompare([]byte(secret), []byte(s.clientSecret)) != 1:
		return entraError(http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
	}
	si := &s.signin
	now := s.Now()
	si.mu.Lock()
	c, ok := si.codes[form.Get("code")]
	var used bool
	if ok {
		used, c.used = c.used, true
	}
	fault := si.fault
	si.mu.Unlock()
	switch {
	case !ok:
		return entraError(http.StatusBadRequest, "invalid_grant", "AADSTS9002313: Invalid request. Request is malformed or invalid: the code is not one the fake issued.")
	case used:
		return entraError(http.StatusBadRequest, "invalid_grant", "AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.")
	case !now.Before(c.expires):
		return entraError(http.StatusBadRequest, "invalid_grant", "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.")
	case form.Get("redirect_uri") != c.redirectURI:
		return entraError(http.StatusBadRequest, "invalid_grant", "AADSTS500112: The reply address does not match the reply address provided when requesting the authorization code.")
	}
	sum := sha256.Sum256([]byte(form.Get("code_verifier")))
	if form.Get("code_verifier") == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		return entraError(http.StatusBadRequest, "invalid_grant", "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request.")
	}

	iat, exp := now, now.Add(time.Hour)
	if fault.Expired {
		iat, exp = now.Add(-2*time.Hour), now.Add(-time.Hour)
	}
	nonce, aud := c.nonce, c.clientID
	if fault.Nonce != "" {
		nonce = fault.Nonce
	}
	if fault.Audience != "" {
		aud = fault.Audience
	}
	sub := sha256.Sum256([]byte(c.user.oid + "|" + c.clientID))
	claims := map[string]any{
		"ver":                "2.0",
		"iss":                s.Issuer(c.user.tenant),
		"aud":                aud,
		"iat":                iat.Unix(),
		"nbf":                iat.Unix(),
		"exp":                exp.Unix(),
		"sub":                base64.RawURLEncoding.EncodeToString(sub[:20]),
		"oid":                c.user.oid,
		"tid":                c.user.tenant,
		"preferred_username": c.user.upn,
		"name":               c.user.name,
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	return jsonReply(http.StatusOK, map[string]any{
		"token_type":   "Bearer",
		"scope":        c.scope,
		"expires_in":   3600,
		"access_token": "graphtest-user." + base64.RawURLEncoding.EncodeToString(b[:]),
		"id_token":     s.signJWT(claims),
	})
}

// appToken is the access token of the client credentials grant: with
// SetAppRoles, a JWT carrying the roles (as Entra's app-only tokens do),
// else an opaque string.
func (s *Server) appToken(seq int, clientID string, exp time.Time) string {
	s.signin.mu.Lock()
	roles := s.signin.roles
	s.signin.mu.Unlock()
	var b [24]byte
	_, _ = rand.Read(b[:])
	if roles == nil {
		return fmt.Sprintf("graphtest.%d.%s", seq, base64.RawURLEncoding.EncodeToString(b[:]))
	}
	now := s.Now()
	return s.signJWT(map[string]any{
		"aud":   "https://graph.microsoft.com",
		"iss":   "https://sts.windows.net/" + s.tenantID + "/",
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   exp.Unix(),
		"appid": clientID,
		"tid":   s.tenantID,
		"roles": roles,
		"uti":   base64.RawURLEncoding.EncodeToString(b[:]),
		"ver":   "1.0",
	})
}

// signJWT signs claims with the fake's key (RS256, the kid its JWKS
// publishes).
func (s *Server) signJWT(claims map[string]any) string {
	key, kid := s.signingKey()
	seg := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := seg(map[string]string{"typ": "JWT", "alg": "RS256", "kid": kid}) + "." + seg(claims)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}
