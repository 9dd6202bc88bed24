package graph

import (
	"testing"

	"github.com/calpresence/calpresence/graph/graphtest"
)

func TestNewSignInCertificate(t *testing.T) {
	srv := graphtest.NewServer(t)
	si, err := NewSignIn(srv.CertificateConfig())
	if err != nil {
		t.Fatalf("NewSignIn(client_certificate) = %v", err)
	}
	cert, key := srv.Certificate()
	if si.Certificate == nil || !si.Certificate.Equal(cert) || si.Key == nil || !si.Key.Equal(key) {
		t.Errorf("NewSignIn(client_certificate) certificate %v, key set %v; want the registered certificate and its key", si.Certificate, si.Key != nil)
	}
	if si.Authority != srv.AuthorityHost() {
		t.Errorf("Authority = %q; want %q", si.Authority, srv.AuthorityHost())
	}

	si, err = NewSignIn(srv.Config())
	if err != nil || si.Certificate != nil || si.Key != nil {
		t.Errorf("NewSignIn(client_secret) = %+v, %v; want no certificate", si, err)
	}

	cfg := srv.CertificateConfig()
	cfg.CertificateFile = t.TempDir() + "/missing.pem"
	if _, err := NewSignIn(cfg); err == nil {
		t.Errorf("NewSignIn with a missing certificate_file = nil error; want one")
	}
}
