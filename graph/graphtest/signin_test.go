package graphtest_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
)

const redirectURI = "http://127.0.0.1:8082/auth/callback"

// signinClient follows no redirect, so that the authorize answer can be read.
func signinClient(srv *graphtest.Server) *http.Client {
	return &http.Client{
		Transport:     srv.HTTPClient().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// authorize asks for a code with the PKCE challenge of verifier and returns
// the redirect's query (code and state, or error).
func authorize(t *testing.T, srv *graphtest.Server, redirect, verifier string) (int, url.Values) {
	t.Helper()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"client_id": {srv.ClientID()}, "response_type": {"code"}, "redirect_uri": {redirect},
		"scope": {"openid profile"}, "state": {"st4te"}, "nonce": {"n0nce"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	resp, err := signinClient(srv).Get(srv.AuthorityHost() + srv.TenantID() + "/oauth2/v2.0/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, url.Values{"body": {string(b)}}
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(u.String(), redirect+"?") {
		t.Fatalf("authorize redirects to %q; want %s?…", resp.Header.Get("Location"), redirect)
	}
	return resp.StatusCode, u.Query()
}

// redeem posts the authorization_code grant and returns status and body.
func redeem(t *testing.T, srv *graphtest.Server, code, verifier string) (int, map[string]any) {
	t.Helper()
	resp, err := srv.HTTPClient().PostForm(srv.AuthorityHost()+srv.TenantID()+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"authorization_code"}, "client_id": {srv.ClientID()}, "client_secret": {srv.ClientSecret()},
		"code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// verifyJWT checks tok's RS256 signature against the fake's published
// keys (discovery → jwks_uri) and returns its claims.
func verifyJWT(t *testing.T, srv *graphtest.Server, tok string) map[string]any {
	t.Helper()
	get := func(u string, v any) {
		resp, err := srv.HTTPClient().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	get(srv.Issuer(srv.TenantID())+"/.well-known/openid-configuration", &disc)
	if disc.Issuer != srv.Issuer(srv.TenantID()) {
		t.Errorf("discovery issuer = %q; want %q", disc.Issuer, srv.Issuer(srv.TenantID()))
	}
	var jwks struct {
		Keys []struct{ Kid, N, E string } `json:"keys"`
	}
	get(disc.JWKSURI, &jwks)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a JWT", tok)
	}
	var hdr struct{ Alg, Kid string }
	seg := func(i int, v any) {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if v != nil {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	seg(0, &hdr)
	var claims map[string]any
	seg(1, &claims)
	i := slices.IndexFunc(jwks.Keys, func(k struct{ Kid, N, E string }) bool { return k.Kid == hdr.Kid })
	if hdr.Alg != "RS256" || i < 0 {
		t.Fatalf("JWT header %+v: want RS256 and a kid among the published keys", hdr)
	}
	n, _ := base64.RawURLEncoding.DecodeString(jwks.Keys[i].N)
	e, _ := base64.RawURLEncoding.DecodeString(jwks.Keys[i].E)
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("JWT signature does not verify with the published key: %v", err)
	}
	return claims
}

func TestAuthorizationCodeFlow(t *testing.T) {
	srv := graphtest.NewServer(t)
	srv.AddRedirectURI(redirectURI)
	srv.SignInAs("oid-alice", "alice@contoso.com", srv.TenantID())
	const verifier = "a-code-verifier-of-at-least-forty-three-characters-long"

	_, q := authorize(t, srv, redirectURI, verifier)
	if q.Get("state") != "st4te" || q.Get("code") == "" {
		t.Fatalf("authorize answered %v; want a code and state st4te", q)
	}
	code := q.Get("code")
	if status, body := redeem(t, srv, code, verifier+"x"); status != http.StatusBadRequest || body["error"] != "invalid_grant" ||
		!strings.Contains(body["error_description"].(string), "AADSTS501481") {
		t.Errorf("redeem with the wrong verifier = %d %v; want 400 invalid_grant AADSTS501481", status, body)
	}

	_, q = authorize(t, srv, redirectURI, verifier)
	code = q.Get("code")
	status, body := redeem(t, srv, code, verifier)
	if status != http.StatusOK {
		t.Fatalf("redeem = %d %v; want 200", status, body)
	}
	claims := verifyJWT(t, srv, body["id_token"].(string))
	for k, want := range map[string]any{
		"iss": srv.Issuer(srv.TenantID()), "aud": srv.ClientID(), "nonce": "n0nce",
		"oid": "oid-alice", "tid": srv.TenantID(), "preferred_username": "alice@contoso.com",
	} {
		if claims[k] != want {
			t.Errorf("ID token %s = %v; want %v", k, claims[k], want)
		}
	}
	if status, body := redeem(t, srv, code, verifier); status != http.StatusBadRequest || body["error"] != "invalid_grant" ||
		!strings.Contains(body["error_description"].(string), "AADSTS54005") {
		t.Errorf("redeem the same code again = %d %v; want 400 invalid_grant AADSTS54005", status, body)
	}

	srv.SetIDTokenFault(graphtest.IDTokenFault{Expired: true, Nonce: "other"})
	_, q = authorize(t, srv, redirectURI, verifier)
	_, body = redeem(t, srv, q.Get("code"), verifier)
	claims = verifyJWT(t, srv, body["id_token"].(string))
	if claims["nonce"] != "other" || claims["exp"].(float64) >= float64(time.Now().Unix()) {
		t.Errorf("faulty ID token claims %v; want nonce other and exp in the past", claims)
	}
}

func TestAuthorizeRefused(t *testing.T) {
	srv := graphtest.NewServer(t)
	srv.AddRedirectURI(redirectURI)
	if status, q := authorize(t, srv, redirectURI, "v"); q.Get("error") != "login_required" {
		t.Errorf("authorize with nobody signed in = %d %v; want error login_required", status, q)
	}
	srv.SignInAs("oid-alice", "alice@contoso.com", srv.TenantID())
	if status, q := authorize(t, srv, "https://evil.example/callback", "v"); status != http.StatusBadRequest || !strings.Contains(q.Get("body"), "AADSTS50011") {
		t.Errorf("authorize with an unregistered redirect URI = %d %v; want 400 AADSTS50011", status, q)
	}
}

// With SetAppRoles, client-credentials tokens are signed JWTs carrying the
// roles, and Graph accepts them.
func TestAppRoles(t *testing.T) {
	srv := graphtest.NewServer(t, graphtest.WithUsers(graphtest.User{ID: "oid-alice", UserPrincipalName: "alice@contoso.com"}))
	srv.SetAppRoles("Presence.ReadWrite.All", "User.Read.All")
	c := &client{t: t, srv: srv, hc: srv.HTTPClient()}
	status, body := c.tokenRequest(url.Values{
		"grant_type": {"client_credentials"}, "client_id": {srv.ClientID()},
		"client_secret": {srv.ClientSecret()}, "scope": {"https://graph.microsoft.com/.default"},
	})
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); status != http.StatusOK || err != nil {
		t.Fatalf("token request = %d %s", status, body)
	}
	claims := verifyJWT(t, srv, tok.AccessToken)
	if roles, _ := claims["roles"].([]any); len(roles) != 2 || roles[0] != "Presence.ReadWrite.All" || roles[1] != "User.Read.All" {
		t.Errorf("access token roles = %v; want [Presence.ReadWrite.All User.Read.All]", claims["roles"])
	}
	if claims["tid"] != srv.TenantID() || claims["appid"] != srv.ClientID() {
		t.Errorf("access token tid %v, appid %v; want %s, %s", claims["tid"], claims["appid"], srv.TenantID(), srv.ClientID())
	}
	c.token = tok.AccessToken
	if status, body, err := c.do(http.MethodGet, "/users/oid-alice", "", nil); err != nil || status != http.StatusOK {
		t.Errorf("GET /users/oid-alice with the JWT = %d %s (%v); want 200", status, body, err)
	}
}
