package graph

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	"github.com/calpresence/calpresence/config"
)

// SignIn is what signing people in with Entra (the self-service page)
// needs from the graph block: the authority the worker's own tokens come
// from, an HTTP client that trusts what Graph's client trusts, and the
// application's certificate when graph.auth is client_certificate.
type SignIn struct {
	// Authority is the Entra authority host with a trailing slash, e.g.
	// https://login.microsoftonline.com/: graph.authority_host, else the
	// one of graph.cloud.
	Authority string
	// HTTPClient trusts graph.ca_file as well as the system's roots.
	HTTPClient *http.Client
	// Certificate and Key are the application's certificate credential
	// (graph.certificate_file, read as Graph's credential reads it), set
	// with auth client_certificate only: the code exchange is then
	// authenticated by a client assertion signed with Key. Certificate is
	// the one of the file's chain that Key belongs to.
	Certificate *x509.Certificate
	Key         *rsa.PrivateKey
}

// signInTimeout bounds one request to the authority (discovery, keys,
// code exchange): a person waits on it.
const signInTimeout = 30 * time.Second

// NewSignIn returns the authority, HTTP client and, with auth
// client_certificate, the certificate and key for signing people in with
// the application of cfg. The certificate file is read once, here: a
// renewed certificate takes effect at the next start, as a changed
// client_secret does.
func NewSignIn(cfg config.Graph) (SignIn, error) {
	ep, err := resolveEndpoints(cfg)
	if err != nil {
		return SignIn{}, err
	}
	t, err := newBaseTransport(cfg.CAFile, 4)
	if err != nil {
		return SignIn{}, err
	}
	si := SignIn{Authority: ep.Authority, HTTPClient: &http.Client{Transport: t, Timeout: signInTimeout}}
	if cfg.Auth == config.AuthClientCertificate {
		if si.Certificate, si.Key, err = signInCertificate(cfg); err != nil {
			return SignIn{}, err
		}
	}
	return si, nil
}

// signInCertificate reads the application's certificate and RSA key
// (readCertificate) and picks the certificate of the chain that the key
// belongs to, as MSAL does for Graph's credential.
func signInCertificate(cfg config.Graph) (*x509.Certificate, *rsa.PrivateKey, error) {
	certs, key, err := readCertificate(cfg)
	if err != nil {
		return nil, nil, err
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		// Entra accepts RS256 and PS256 client assertions only.
		return nil, nil, fmt.Errorf("graph: certificate_file %s: a %T; Entra client certificates need an RSA key", cfg.CertificateFile, key)
	}
	for _, c := range certs {
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && pub.Equal(&rk.PublicKey) {
			return c, rk, nil
		}
	}
	return nil, nil, fmt.Errorf("graph: certificate_file %s: the private key matches none of the certificates", cfg.CertificateFile)
}
