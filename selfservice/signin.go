package selfservice

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// provider is the tenant's OpenID Connect configuration, discovered once.
type provider struct {
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
	issuer   string // https://login.microsoftonline.com/{tid}/v2.0
	tenant   string // the tid every ID token must carry
}

// claims are the ID token claims used beyond go-oidc's checks (Microsoft
// identity platform, "ID token claims reference").
type claims struct {
	OID               string `json:"oid"`
	TID               string `json:"tid"`
	Issuer            string `json:"iss"`
	Name              string `json:"name"`
	PreferredUsername string `json:"preferred_username"`
}

// DiscoveryURL is the tenant's OpenID Connect discovery document that
// sign-in reads: {authority}/{tenant}/v2.0/.well-known/openid-configuration.
func DiscoveryURL(authority, tenant string) string {
	return strings.TrimRight(authority, "/") + "/" + tenant + "/v2.0/.well-known/openid-configuration"
}

// Discover fetches the tenant's discovery document (DiscoveryURL) with
// client, as sign-in does on its first use, and returns the issuer it
// accepts; `calpresence doctor` checks with it that the authority answers.
func Discover(ctx context.Context, client *http.Client, authority, tenant string) (issuer string, err error) {
	_, issuer, err = discoverProvider(ctx, client, authority, tenant)
	return issuer, err
}

// discoverProvider fetches the tenant's discovery document.
//
// Entra's issuer names the tenant by its GUID. With graph.tenant_id a GUID
// the discovery document's issuer is the discovery URL's, as OpenID
// Connect Discovery requires. With a domain name (contoso.onmicrosoft.com)
// Entra answers the GUID issuer: that one is accepted, from the tenant's
// own discovery document at the configured authority only, and every ID
// token must then carry it.
func discoverProvider(ctx context.Context, client *http.Client, authority, tenant string) (*oidc.Provider, string, error) {
	if client != nil {
		ctx = oidc.ClientContext(ctx, client)
	}
	base := strings.TrimRight(authority, "/") + "/"
	issuer := base + tenant + "/v2.0"
	p, err := oidc.NewProvider(ctx, issuer)
	var mismatch *oidc.IssuerMismatchError
	if errors.As(err, &mismatch) && tenantOfIssuer(base, mismatch.Discovered) != "" {
		issuer = mismatch.Discovered
		p, err = oidc.NewProvider(oidc.InsecureIssuerURLContext(ctx, issuer), base+tenant+"/v2.0")
	}
	if err != nil {
		return nil, "", fmt.Errorf("discover %s: %w", issuer, err)
	}
	return p, issuer, nil
}

// discover returns the tenant's provider, fetching the discovery document
// on first use (discoverProvider).
func (s *Server) discover(ctx context.Context) (*provider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prov != nil {
		return s.prov, nil
	}
	p, issuer, err := discoverProvider(ctx, s.cfg.HTTPClient, s.cfg.Authority, s.cfg.TenantID)
	if err != nil {
		return nil, err
	}
	base := s.trimAuthority() + "/"
	ep := p.Endpoint()
	// Entra reads the client secret from the form (client_secret_post);
	// with a certificate, the form carries client_id and the assertion
	// (private_key_jwt), no secret.
	ep.AuthStyle = oauth2.AuthStyleInParams
	s.prov = &provider{
		oauth: &oauth2.Config{
			ClientID:     s.cfg.ClientID,
			ClientSecret: s.cfg.ClientSecret,
			Endpoint:     ep,
			RedirectURL:  s.redirect,
			Scopes:       []string{oidc.ScopeOpenID, oidc.ScopeProfile},
		},
		// The issuer is checked here, after tid, so that a token from
		// another tenant (signed with the same Entra keys) is named as
		// such rather than as a bad issuer.
		verifier: p.Verifier(&oidc.Config{
			ClientID:             s.cfg.ClientID,
			SupportedSigningAlgs: []string{oidc.RS256},
			SkipIssuerCheck:      true,
			Now:                  s.cfg.Now,
		}),
		issuer: issuer,
		tenant: tenantOfIssuer(base, issuer),
	}
	return s.prov, nil
}

// clientAssertionType is the client_assertion_type of a JWT client
// assertion (RFC 7523 section 2.2).
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a client assertion may be used: it is
// sent at once, so minutes (Entra asks for "5-10 minutes after nbf" at
// most).
const assertionLifetime = 5 * time.Minute

// clientAssertion returns a client assertion for the token endpoint
// tokenURL, signed with the application's certificate key, in the format
// of the Microsoft identity platform's "certificate credentials": PS256,
// header x5t#S256 (the SHA-256 thumbprint of the certificate's DER, which
// names the registered certificate), claims aud = the token endpoint,
// iss = sub = the client id, a fresh jti, nbf, iat and a short exp.
func (s *Server) clientAssertion(tokenURL string) (string, error) {
	thumb := sha256.Sum256(s.cfg.ClientCertificate.Raw)
	opts := (&jose.SignerOptions{}).WithType("JWT").
		WithHeader("x5t#S256", base64.RawURLEncoding.EncodeToString(thumb[:]))
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.PS256, Key: s.cfg.ClientKey}, opts)
	if err != nil {
		return "", fmt.Errorf("client assertion signer: %w", err)
	}
	now := s.now()
	raw, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer:    s.cfg.ClientID,
		Subject:   s.cfg.ClientID,
		Audience:  jwt.Audience{tokenURL},
		ID:        randomToken(),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(assertionLifetime)),
	}).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign client assertion: %w", err)
	}
	return raw, nil
}

// tenantOfIssuer returns the {tid} of an issuer base+{tid}+"/v2.0", or "".
func tenantOfIssuer(base, issuer string) string {
	rest, ok := strings.CutPrefix(issuer, base)
	if !ok {
		return ""
	}
	tid, ok := strings.CutSuffix(rest, "/v2.0")
	if !ok || tid == "" || strings.Contains(tid, "/") {
		return ""
	}
	return tid
}

// home is GET /: the person's own page, or straight to the authority for
// someone without a session (people come from a bookmark or a Teams tab:
// no extra click).
func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	se, ok := s.readSession(r)
	if !ok {
		s.startLogin(w, r)
		return
	}
	upn, known, err := s.dir.Known(r.Context(), se.OID)
	if err != nil {
		s.logger.WarnContext(r.Context(), "selfservice: directory lookup failed", "oid", se.OID, "err", err)
		s.refuse(w, http.StatusServiceUnavailable, "Your account cannot be checked right now",
			"The worker could not reach the directory to check your account. Try again in a minute.")
		return
	}
	if !known {
		s.clearCookie(w, s.sessionCookie())
		s.refuseUnknown(w)
		return
	}
	se.UPN = upn
	s.showPerson(w, r, se)
}

// startLogin redirects to the authorize endpoint with a fresh state, nonce
// and PKCE verifier, kept for the callback in a login cookie.
func (s *Server) startLogin(w http.ResponseWriter, r *http.Request) {
	p, err := s.discover(r.Context())
	if err != nil {
		s.logger.WarnContext(r.Context(), "selfservice: sign-in unavailable", "err", err)
		s.refuse(w, http.StatusServiceUnavailable, "Sign-in is unavailable right now",
			"The worker cannot reach Microsoft Entra ID to sign you in. Try again in a minute.")
		return
	}
	lg := pending{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Issued: s.now().Unix()}
	name := s.loginCookie(lg.State)
	v, err := s.login.Encode(name, lg)
	if err != nil {
		s.logger.ErrorContext(r.Context(), "selfservice: encode login cookie", "err", err)
		s.refuse(w, http.StatusInternalServerError, "Sign-in failed", "The worker could not start a sign-in.")
		return
	}
	s.setCookie(w, name, v, loginLifetime)
	http.Redirect(w, r, p.oauth.AuthCodeURL(lg.State, oidc.Nonce(lg.Nonce), oauth2.S256ChallengeOption(lg.Verifier)), http.StatusFound)
}

// callback is GET /auth/callback: the authority sends the browser back
// with a code (or an error) and the state.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	lg, ok := s.pendingLogin(r, state)
	if !ok {
		s.refuse(w, http.StatusBadRequest, "Refused: this sign-in was not started in this browser",
			"The answer from Microsoft Entra ID carries a state this browser was not given (or the sign-in took longer than 10 minutes). Nobody was signed in.")
		return
	}
	s.clearCookie(w, s.loginCookie(state)) // one answer per sign-in
	if e := q.Get("error"); e != "" {
		s.logger.InfoContext(ctx, "selfservice: the authority refused the sign-in", "error", e, "description", q.Get("error_description"))
		s.refuse(w, http.StatusForbidden, "Microsoft Entra ID did not sign you in",
			"Entra answered "+e+": "+q.Get("error_description"))
		return
	}
	p, err := s.discover(ctx)
	if err != nil {
		s.logger.WarnContext(ctx, "selfservice: sign-in unavailable", "err", err)
		s.refuse(w, http.StatusServiceUnavailable, "Sign-in is unavailable right now",
			"The worker cannot reach Microsoft Entra ID to sign you in. Try again in a minute.")
		return
	}
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(lg.Verifier)}
	if s.cfg.ClientKey != nil {
		assertion, err := s.clientAssertion(p.oauth.Endpoint.TokenURL)
		if err != nil {
			s.logger.ErrorContext(ctx, "selfservice: sign client assertion", "err", err)
			s.refuse(w, http.StatusInternalServerError, "Sign-in failed", "The worker could not sign its request to Microsoft Entra ID.")
			return
		}
		// With no ClientSecret, AuthStyleInParams sends client_id alone:
		// the assertion is the credential.
		opts = append(opts, oauth2.SetAuthURLParam("client_assertion_type", clientAssertionType),
			oauth2.SetAuthURLParam("client_assertion", assertion))
	}
	tok, err := p.oauth.Exchange(oidc.ClientContext(ctx, s.cfg.HTTPClient), q.Get("code"), opts...)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			s.logger.InfoContext(ctx, "selfservice: code refused", "error", re.ErrorCode, "description", re.ErrorDescription)
			s.refuse(w, http.StatusBadRequest, "Refused: this sign-in code was already used or has expired",
				"Microsoft Entra ID refused the code (invalid_grant): a code works once, within minutes. Nobody was signed in; sign in again.")
			return
		}
		s.logger.WarnContext(ctx, "selfservice: token request failed", "err", err)
		s.refuse(w, http.StatusBadGateway, "Sign-in failed", "The worker could not redeem the sign-in with Microsoft Entra ID. Try again.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		s.refuse(w, http.StatusBadGateway, "Sign-in failed", "Microsoft Entra ID answered without an ID token.")
		return
	}
	c, err := s.verify(ctx, p, raw, lg.Nonce)
	if err != nil {
		var re refusal
		if errors.As(err, &re) {
			s.logger.InfoContext(ctx, "selfservice: ID token refused", "err", err)
			s.refuse(w, re.status, re.title, re.text)
			return
		}
		s.logger.InfoContext(ctx, "selfservice: ID token refused", "err", err)
		s.refuse(w, http.StatusBadRequest, "Refused: the sign-in token is not valid",
			"The ID token's signature, audience or issuer did not check out. Nobody was signed in.")
		return
	}
	upn, known, err := s.dir.Known(ctx, c.OID)
	if err != nil {
		s.logger.WarnContext(ctx, "selfservice: directory lookup failed", "oid", c.OID, "err", err)
		s.refuse(w, http.StatusServiceUnavailable, "Your account cannot be checked right now",
			"The worker could not reach the directory to check your account. Try again in a minute.")
		return
	}
	if !known {
		s.logger.InfoContext(ctx, "selfservice: unknown or disabled person refused", "oid", c.OID)
		s.refuseUnknown(w)
		return
	}
	if err := s.startSession(w, session{OID: c.OID, UPN: upn, Name: c.Name}); err != nil {
		s.logger.ErrorContext(ctx, "selfservice: start session", "err", err)
		s.refuse(w, http.StatusInternalServerError, "Sign-in failed", "The worker could not start your session.")
		return
	}
	s.logger.InfoContext(ctx, "selfservice: signed in", "oid", c.OID)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// pendingLogin returns the login cookie issued with state to this browser.
func (s *Server) pendingLogin(r *http.Request, state string) (pending, bool) {
	if len(state) < 12 {
		return pending{}, false
	}
	name := s.loginCookie(state)
	c, err := r.Cookie(name)
	if err != nil {
		return pending{}, false
	}
	var lg pending
	if err := s.login.Decode(name, c.Value, &lg); err != nil {
		return pending{}, false
	}
	age := s.now().Sub(time.Unix(lg.Issued, 0))
	if subtle.ConstantTimeCompare([]byte(lg.State), []byte(state)) != 1 || age < -time.Minute || age >= loginLifetime {
		return pending{}, false
	}
	return lg, true
}

// refusal is a verification failure with the page that explains it.
type refusal struct {
	status      int
	title, text string
	err         error
}

func (r refusal) Error() string { return r.title + ": " + r.err.Error() }

// verify checks an ID token: signature, audience and expiry (go-oidc),
// then tid, issuer and nonce, and that it names a person (oid).
func (s *Server) verify(ctx context.Context, p *provider, raw, nonce string) (claims, error) {
	idt, err := p.verifier.Verify(oidc.ClientContext(ctx, s.cfg.HTTPClient), raw)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return claims{}, refusal{http.StatusBadRequest, "Refused: the sign-in token has expired",
				"Microsoft Entra ID's answer is too old to use. Nobody was signed in; sign in again.", err}
		}
		return claims{}, err
	}
	var c claims
	if err := idt.Claims(&c); err != nil {
		return claims{}, fmt.Errorf("decode claims: %w", err)
	}
	if !strings.EqualFold(c.TID, p.tenant) {
		return claims{}, refusal{http.StatusForbidden, "Refused: this account belongs to another organisation",
			"You signed in with an account of another Entra tenant. Sign in with your account of this organisation.",
			fmt.Errorf("tid %q is not %q", c.TID, p.tenant)}
	}
	if idt.Issuer != p.issuer {
		return claims{}, fmt.Errorf("issuer %q is not %q", idt.Issuer, p.issuer)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return claims{}, refusal{http.StatusBadRequest, "Refused: the sign-in answer was not meant for this request",
			"The ID token's nonce does not match the one this browser's sign-in asked for. Nobody was signed in.",
			errors.New("nonce mismatch")}
	}
	if c.OID == "" {
		return claims{}, errors.New("no oid claim")
	}
	return c, nil
}

// refuseUnknown is the page for a person the directory does not know or
// has disabled.
func (s *Server) refuseUnknown(w http.ResponseWriter) {
	s.refuse(w, http.StatusForbidden, "Refused: your account is unknown or disabled",
		"Your Entra account is not an enabled user of this organisation's directory, so this page is not for it.")
}
