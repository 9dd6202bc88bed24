package graphtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/calpresence/calpresence/config"
)

// openID answers GET /{tenant}/v2.0/.well-known/openid-configuration, the
// tenant discovery document MSAL reads before its first token request
// (with instance discovery disabled, the only other thing it asks for).
func (s *Server) openID(r *http.Request) reply {
	if r.Method != http.MethodGet {
		return entraError(http.StatusMethodNotAllowed, "invalid_request", "GET only")
	}
	tenant := tenantOf(r.URL.Path)
	if !s.knownTenant(tenant) {
		return entraError(http.StatusBadRequest, "invalid_tenant",
			fmt.Sprintf("AADSTS90002: Tenant '%s' not found.", tenant))
	}
	// Entra names the tenant by its GUID whatever the request said.
	base := "https://" + r.Host + "/" + s.tenantID
	return jsonReply(http.StatusOK, map[string]any{
		"issuer":                                base + "/v2.0",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"tenant_region_scope":                   "NA",
		"cloud_instance_name":                   "microsoftonline.com",
		"msgraph_host":                          "graph.microsoft.com",
	})
}

func tenantOf(path string) string {
	t, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return t
}

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// token answers POST /{tenant}/oauth2/v2.0/token for the client credentials
// grant, authenticated by client_secret (form or HTTP Basic) or by a
// client_assertion signed with the certificate from CertificateFile.
func (s *Server) token(r *http.Request, body []byte) reply {
	if r.Method != http.MethodPost {
		return entraError(http.StatusMethodNotAllowed, "invalid_request", "POST only")
	}
	tenant := tenantOf(r.URL.Path)
	if !strings.EqualFold(tenant, s.tenantID) {
		return entraError(http.StatusBadRequest, "invalid_tenant",
			fmt.Sprintf("AADSTS90002: Tenant '%s' not found.", tenant))
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return entraError(http.StatusBadRequest, "invalid_request", "AADSTS900144: malformed form body")
	}
	if form.Get("grant_type") == "authorization_code" {
		return s.redeemCode(r, form)
	}
	if g := form.Get("grant_type"); g != "client_credentials" {
		return entraError(http.StatusBadRequest, "unsupported_grant_type",
			fmt.Sprintf("AADSTS70003: grant type %q is not supported by the fake.", g))
	}
	clientID, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		clientID, secret = u, p
	}
	if clientID != s.clientID {
		return entraError(http.StatusBadRequest, "unauthorized_client",
			fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory.", clientID))
	}
	scope := form.Get("scope")
	if !hasDefaultScope(scope) {
		return entraError(http.StatusBadRequest, "invalid_scope",
			fmt.Sprintf("AADSTS1002012: The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.", scope))
	}
	switch {
	case form.Get("client_assertion") != "":
		if form.Get("client_assertion_type") != assertionType {
			return entraError(http.StatusBadRequest, "invalid_request", "AADSTS50027: unsupported client_assertion_type")
		}
		if fed := s.federatedToken(); fed != "" && form.Get("client_assertion") == fed {
			break // workload identity: the federated token itself
		}
		if rep, ok := s.checkAssertion(form, clientID, "https://"+r.Host+r.URL.Path); !ok {
			return rep
		}
	case secret != "":
		if subtle.ConstantTimeCompare([]byte(secret), []byte(s.clientSecret)) != 1 {
			return entraError(http.StatusUnauthorized, "invalid_client",
				fmt.Sprintf("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID))
		}
	default:
		return entraError(http.StatusUnauthorized, "invalid_client",
			"AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	}

	s.mu.Lock()
	s.tokenSeq++
	seq, expires := s.tokenSeq, s.nowLocked().Add(s.tokenLifetime)
	s.mu.Unlock()
	tok := s.appToken(seq, clientID, expires)
	s.mu.Lock()
	s.tokens[tok] = tokenInfo{clientID: clientID, expires: expires}
	s.mu.Unlock()
	secs := int(s.tokenLifetime / time.Second)
	return jsonReply(http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   tok,
	})
}

func hasDefaultScope(scope string) bool {
	for _, sc := range strings.Fields(scope) {
		if strings.HasSuffix(sc, "/.default") {
			return true
		}
	}
	return false
}

// clientCert is the application's certificate credential.
type clientCert struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
	path string // PEM file with certificate and key
}

// ensureCert generates the application certificate once.
func (s *Server) ensureCert() *clientCert {
	s.certOnce.Do(func() {
		cert, key := NewCertificate(s.tb, "calpresence graphtest client")
		pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			s.tb.Fatalf("graphtest: marshal key: %v", err)
		}
		data := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...)
		path := filepath.Join(s.tb.TempDir(), "graphtest-client.pem")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			s.tb.Fatalf("graphtest: write certificate: %v", err)
		}
		s.mu.Lock()
		s.cert = &clientCert{cert: cert, key: key, path: path}
		s.mu.Unlock()
	})
	return s.cert
}

// NewCertificate returns a self-signed certificate named name, valid for a
// day, and its RSA key: an application certificate the fake has not
// registered (Certificate is the one it has).
func NewCertificate(tb testing.TB, name string) (*x509.Certificate, *rsa.PrivateKey) {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("graphtest: generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("graphtest: create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("graphtest: parse certificate: %v", err)
	}
	return cert, key
}

// Certificate returns the application's registered certificate and its
// private key (the content of CertificateFile): the fake accepts client
// assertions signed with that key that name that certificate.
func (s *Server) Certificate() (*x509.Certificate, *rsa.PrivateKey) {
	cc := s.ensureCert()
	return cc.cert, cc.key
}

// CertificateFile writes the application's certificate and private key
// (unencrypted PEM) to the test's temporary directory and returns the path,
// for config.Graph.CertificateFile. The fake then accepts client assertions
// signed with that key.
func (s *Server) CertificateFile() string { return s.ensureCert().path }

// CertificateConfig is Config with client_certificate authentication.
func (s *Server) CertificateConfig() config.Graph {
	c := s.Config()
	c.Auth = "client_certificate"
	c.ClientSecret = ""
	c.CertificateFile = s.CertificateFile()
	return c
}

// FederatedTokenFile writes a federated identity token (what the
// Kubernetes workload identity webhook mounts) to the test's temporary
// directory and returns its path, for config.Graph.TokenFile. The fake then
// accepts it as a client assertion.
func (s *Server) FederatedTokenFile() string {
	s.fedOnce.Do(func() {
		seg := func(v any) string {
			b, _ := json.Marshal(v)
			return base64.RawURLEncoding.EncodeToString(b)
		}
		tok := seg(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." +
			seg(map[string]any{"iss": "https://oidc.graphtest.invalid", "sub": "system:serviceaccount:calpresence:calpresence",
				"aud": "api://AzureADTokenExchange", "exp": time.Now().Add(24 * time.Hour).Unix()}) +
			"." + base64.RawURLEncoding.EncodeToString([]byte(newID()))
		path := filepath.Join(s.tb.TempDir(), "graphtest-federated-token")
		if err := os.WriteFile(path, []byte(tok), 0o600); err != nil {
			s.tb.Fatalf("graphtest: write federated token: %v", err)
		}
		s.mu.Lock()
		s.fedToken, s.fedPath = tok, path
		s.mu.Unlock()
	})
	return s.fedPath
}

func (s *Server) federatedToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fedToken
}

// WorkloadIdentityConfig is Config with workload_identity authentication
// and TokenFile set to FederatedTokenFile.
func (s *Server) WorkloadIdentityConfig() config.Graph {
	c := s.Config()
	c.Auth = "workload_identity"
	c.ClientSecret = ""
	c.TokenFile = s.FederatedTokenFile()
	return c
}

// assertionLeeway is the clock skew the fake allows a client assertion's
// exp, nbf and iat.
const assertionLeeway = 5 * time.Minute

// checkAssertion authenticates a client by its client_assertion (RFC
// 7523) as Entra checks one signed with a certificate (Microsoft identity
// platform, "certificate credentials"): the header's thumbprint (x5t#S256,
// or the older SHA-1 x5t) names the registered certificate, the signature
// (RS256 or PS256) verifies with its public key, iss = sub = clientID, aud
// is the token endpoint, and exp (required), nbf and iat hold by the
// fake's clock. A refusal is Entra's invalid_client with the AADSTS code
// its troubleshooting guides publish.
func (s *Server) checkAssertion(form url.Values, clientID, endpoint string) (reply, bool) {
	refuse := func(desc string) (reply, bool) {
		return entraError(http.StatusUnauthorized, "invalid_client", desc), false
	}
	if form.Get("client_assertion_type") != assertionType {
		return entraError(http.StatusBadRequest, "invalid_request", "AADSTS50027: JWT token is invalid or malformed: unsupported client_assertion_type."), false
	}
	s.mu.Lock()
	cc := s.cert
	s.mu.Unlock()
	if cc == nil {
		return refuse("AADSTS700027: Client assertion contains an invalid signature. [Reason - No certificate is registered for the application.]")
	}
	tok, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS256, jose.PS256})
	if err != nil || len(tok.Headers) != 1 {
		return refuse(fmt.Sprintf("AADSTS50027: JWT token is invalid or malformed: %v", err))
	}
	if thumb, ok := certThumbprint(tok.Headers[0], cc.cert); !ok {
		return refuse(fmt.Sprintf("AADSTS700027: Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '%s']", thumb))
	}
	var claims jwt.Claims
	if err := tok.Claims(cc.cert.PublicKey, &claims); err != nil {
		return refuse("AADSTS700027: Client assertion contains an invalid signature. [Reason - The signature does not verify with the registered certificate's key.]")
	}
	if claims.Issuer != clientID || claims.Subject != clientID {
		return refuse(fmt.Sprintf("AADSTS700021: Client assertion application identifier doesn't match 'client_id' parameter (iss %q, sub %q).", claims.Issuer, claims.Subject))
	}
	if !slices.ContainsFunc(claims.Audience, func(a string) bool { return strings.EqualFold(a, endpoint) }) {
		return refuse(fmt.Sprintf("AADSTS700023: Client assertion audience claim does not match Realm issuer (aud %q, want %q).", []string(claims.Audience), endpoint))
	}
	if claims.Expiry == nil {
		return refuse("AADSTS700024: Client assertion is not within its valid time range: it has no exp.")
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{Time: s.Now()}, assertionLeeway); err != nil {
		return refuse(fmt.Sprintf("AADSTS700024: Client assertion is not within its valid time range: %v.", err))
	}
	return reply{}, true
}

// certThumbprint reports whether the header's thumbprint names cert:
// x5t#S256 (SHA-256 of the DER) or x5t (SHA-1). It returns the thumbprint
// the header gave, for the refusal. RFC 7515 encodes it base64url; MSAL Go
// sends standard base64, which Entra accepts, so the fake accepts both.
func certThumbprint(h jose.Header, cert *x509.Certificate) (string, bool) {
	s256 := sha256.Sum256(cert.Raw)
	s1 := sha1.Sum(cert.Raw)
	for _, t := range []struct {
		key  jose.HeaderKey
		want []byte
	}{{"x5t#S256", s256[:]}, {"x5t", s1[:]}} {
		v, _ := h.ExtraHeaders[t.key].(string)
		if v == "" {
			continue
		}
		for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
			if got, err := enc.DecodeString(v); err == nil && subtle.ConstantTimeCompare(got, t.want) == 1 {
				return v, true
			}
		}
		return v, false
	}
	return "", false
}

// ParseISODuration parses the ISO 8601 durations Graph accepts for
// expirationDuration: PnW, PnD and the time part TnHnMn(.n)S. Years and
// months are refused (their length is not fixed).
func ParseISODuration(s string) (time.Duration, error) {
	rest, ok := strings.CutPrefix(s, "P")
	if !ok || rest == "" {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration", s)
	}
	var d time.Duration
	inTime, any := false, false
	for rest != "" {
		if rest[0] == 'T' {
			if inTime {
				return 0, fmt.Errorf("%q: repeated T", s)
			}
			inTime, rest = true, rest[1:]
			if rest == "" {
				return 0, fmt.Errorf("%q: empty time part", s)
			}
			continue
		}
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 || i == len(rest) {
			return 0, fmt.Errorf("%q: expected a number and a unit", s)
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %v", s, err)
		}
		var unit time.Duration
		switch u := rest[i]; {
		case !inTime && u == 'W':
			unit = 7 * 24 * time.Hour
		case !inTime && u == 'D':
			unit = 24 * time.Hour
		case inTime && u == 'H':
			unit = time.Hour
		case inTime && u == 'M':
			unit = time.Minute
		case inTime && u == 'S':
			unit = time.Second
		default:
			return 0, fmt.Errorf("%q: unsupported unit %q", s, string(u))
		}
		d += time.Duration(n * float64(unit))
		any, rest = true, rest[i+1:]
	}
	if !any {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration", s)
	}
	return d, nil
}
