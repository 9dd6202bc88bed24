package selfservice_test

import (
	"crypto/rsa"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/selfservice"
)

// withCertificate makes the application's credential a certificate and
// key instead of the secret.
func withCertificate(cert *x509.Certificate, key *rsa.PrivateKey) func(*graphtest.Server, *selfservice.Config) {
	return func(_ *graphtest.Server, c *selfservice.Config) {
		c.ClientSecret, c.ClientCertificate, c.ClientKey = "", cert, key
	}
}

// With the application's certificate (graph.auth client_certificate), the
// code exchange carries a client assertion the fake Entra verifies against
// the registered certificate, and no secret: the fake refuses a request
// with both.
func TestSignInWithCertificate(t *testing.T) {
	e := newEnvWith(t, "", nil, func(f *graphtest.Server, c *selfservice.Config) {
		cert, key := f.Certificate()
		withCertificate(cert, key)(f, c)
	})
	b := e.browser(t)
	page := e.signIn(b)
	wantPage(t, "GET / signed in with a certificate", page, http.StatusOK, aliceUPN)

	var grants int
	for _, c := range e.fake.CallsOp(graphtest.OpToken) {
		if c.Query.Get("grant_type") != "authorization_code" {
			continue
		}
		grants++
		if c.Status != http.StatusOK || c.Query.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" ||
			c.Query.Get("client_id") != e.fake.ClientID() {
			t.Errorf("code exchange %d %v; want 200 with client_id and a jwt-bearer client assertion", c.Status, c.Query)
		}
	}
	if grants != 1 {
		t.Errorf("%d authorization_code redemptions; want 1", grants)
	}
}

// A certificate the application never registered in Entra signs nobody
// in: Entra refuses the assertion (invalid_client, AADSTS700027) and the
// page says the sign-in failed.
func TestSignInWithUnregisteredCertificate(t *testing.T) {
	e := newEnvWith(t, "", nil, func(f *graphtest.Server, c *selfservice.Config) {
		f.Certificate() // the application has a certificate, not this one
		cert, key := graphtest.NewCertificate(t, "not registered")
		withCertificate(cert, key)(f, c)
	})
	b := e.browser(t)
	a := b.get(e.callbackURL(b, e.toAuthority(b)).String())
	wantPage(t, "callback with an unregistered certificate", a, http.StatusBadGateway, "could not redeem the sign-in")
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == "calpresence_session" && c.MaxAge >= 0 {
			t.Errorf("callback set a session cookie: %+v", c)
		}
	}
	// The fake's refusal (AADSTS700027, the key was not found) is
	// checked in graphtest; here, that the exchange was refused.
	var refused int
	for _, c := range e.fake.CallsOp(graphtest.OpToken) {
		if c.Query.Get("grant_type") == "authorization_code" {
			if c.Status != http.StatusUnauthorized {
				t.Errorf("code exchange = %d; want 401 (invalid_client)", c.Status)
			}
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("%d code exchanges; want 1", refused)
	}
}

// TestNewApplicationCredential: New takes a secret or a certificate with
// its key, not both, not neither, and not a key of another certificate.
func TestNewApplicationCredential(t *testing.T) {
	fake := graphtest.NewServer(t)
	cert, key := fake.Certificate()
	_, otherKey := graphtest.NewCertificate(t, "other")
	base := selfservice.Config{
		URL: "http://127.0.0.1:8082", Authority: fake.AuthorityHost(), TenantID: fake.TenantID(), ClientID: fake.ClientID(),
		CookieKey: []byte("0123456789abcdef0123456789abcdef"),
	}
	tests := []struct {
		name    string
		edit    func(*selfservice.Config)
		wantErr string
	}{
		{"secret", func(c *selfservice.Config) { c.ClientSecret = "s3cret" }, ""},
		{"certificate", func(c *selfservice.Config) { c.ClientCertificate, c.ClientKey = cert, key }, ""},
		{"none", func(*selfservice.Config) {}, "a client secret or a client certificate and key is required"},
		{"both", func(c *selfservice.Config) { c.ClientSecret, c.ClientCertificate, c.ClientKey = "s3cret", cert, key }, "not both"},
		{"certificate without key", func(c *selfservice.Config) { c.ClientCertificate = cert }, "needs its private key"},
		{"key of another certificate", func(c *selfservice.Config) { c.ClientCertificate, c.ClientKey = cert, otherKey }, "does not belong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.edit(&cfg)
			_, err := selfservice.New(cfg, &directory{}, newPeople(nil), nil)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("New = %v; want %q", err, tt.wantErr)
			}
		})
	}
}
