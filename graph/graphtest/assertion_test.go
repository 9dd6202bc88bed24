package graphtest_test

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/calpresence/calpresence/graph/graphtest"
)

// assertion is what a client signs: the header's algorithm and
// thumbprint, the key, the claims.
type assertion struct {
	alg    jose.SignatureAlgorithm
	header map[jose.HeaderKey]any
	key    *rsa.PrivateKey
	claims jwt.Claims
}

func (a assertion) sign(t *testing.T) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range a.header {
		opts = opts.WithHeader(k, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: a.alg, Key: a.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(a.claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestClientAssertion checks that the token endpoint authenticates a
// certificate's client assertion as Entra does, and refuses one that is
// signed by another key, names another certificate, or has the wrong
// audience, issuer or time with Entra's invalid_client and AADSTS code.
func TestClientAssertion(t *testing.T) {
	c := newClient(t)
	srv := c.srv
	cert, key := srv.Certificate()
	otherCert, otherKey := graphtest.NewCertificate(t, "not registered")
	endpoint := srv.URL() + "/" + srv.TenantID() + "/oauth2/v2.0/token"
	s256 := func(c *x509.Certificate) []byte { s := sha256.Sum256(c.Raw); return s[:] }
	s1 := sha1.Sum(cert.Raw)
	good := func() assertion {
		now := srv.Now()
		return assertion{
			alg:    jose.PS256,
			header: map[jose.HeaderKey]any{"x5t#S256": base64.RawURLEncoding.EncodeToString(s256(cert))},
			key:    key,
			claims: jwt.Claims{Issuer: srv.ClientID(), Subject: srv.ClientID(), Audience: jwt.Audience{endpoint},
				ID: "a-jti", NotBefore: jwt.NewNumericDate(now), IssuedAt: jwt.NewNumericDate(now),
				Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute))},
		}
	}
	tests := []struct {
		name   string
		edit   func(*assertion)
		status int
		aadsts string // "" when accepted
	}{
		{"PS256 x5t#S256", func(*assertion) {}, 200, ""},
		{"RS256 x5t", func(a *assertion) {
			a.alg = jose.RS256
			a.header = map[jose.HeaderKey]any{"x5t": base64.RawURLEncoding.EncodeToString(s1[:])}
		}, 200, ""},
		{"thumbprint in standard base64, as MSAL Go sends it", func(a *assertion) {
			a.header = map[jose.HeaderKey]any{"x5t#S256": base64.StdEncoding.EncodeToString(s256(cert))}
		}, 200, ""},
		{"signed by another key", func(a *assertion) { a.key = otherKey }, 401, "AADSTS700027"},
		{"another certificate", func(a *assertion) {
			a.key = otherKey
			a.header = map[jose.HeaderKey]any{"x5t#S256": base64.RawURLEncoding.EncodeToString(s256(otherCert))}
		}, 401, "AADSTS700027"},
		{"no thumbprint", func(a *assertion) { a.header = nil }, 401, "AADSTS700027"},
		{"another audience", func(a *assertion) {
			a.claims.Audience = jwt.Audience{"https://login.microsoftonline.com/" + srv.TenantID() + "/oauth2/v2.0/token"}
		}, 401, "AADSTS700023"},
		{"another issuer", func(a *assertion) { a.claims.Issuer = "someone-else" }, 401, "AADSTS700021"},
		{"another subject", func(a *assertion) { a.claims.Subject = "someone-else" }, 401, "AADSTS700021"},
		{"expired", func(a *assertion) {
			a.claims.Expiry = jwt.NewNumericDate(srv.Now().Add(-10 * time.Minute))
		}, 401, "AADSTS700024"},
		{"no exp", func(a *assertion) { a.claims.Expiry = nil }, 401, "AADSTS700024"},
		{"not yet valid", func(a *assertion) {
			a.claims.NotBefore = jwt.NewNumericDate(srv.Now().Add(time.Hour))
		}, 401, "AADSTS700024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := good()
			tt.edit(&a)
			status, body := c.tokenRequest(url.Values{
				"grant_type": {"client_credentials"}, "client_id": {srv.ClientID()}, "scope": {srv.URL() + "/.default"},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion":      {a.sign(t)},
			})
			var e struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
				Codes       []int  `json:"error_codes"`
			}
			_ = json.Unmarshal(body, &e)
			if tt.aadsts == "" {
				if status != 200 {
					t.Errorf("token = %d %s; want 200", status, body)
				}
				return
			}
			if status != tt.status || e.Error != "invalid_client" || !strings.HasPrefix(e.Description, tt.aadsts+":") ||
				len(e.Codes) != 1 || "AADSTS"+strconv.Itoa(e.Codes[0]) != tt.aadsts {
				t.Errorf("token = %d %s; want %d invalid_client %s", status, body, tt.status, tt.aadsts)
			}
		})
	}
}
