package graph

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/calpresence/calpresence/config"
)

// newCredential builds the azidentity credential graph.auth names. Secrets
// and certificates are read from their files here, so a rebuilt credential
// picks up a rotated secret.
func newCredential(cfg config.Graph, ep endpoints, transport policy.Transporter) (azcore.TokenCredential, error) {
	opts := azcore.ClientOptions{Cloud: ep.Cloud, Transport: transport}
	auth := cfg.Auth
	if auth == "" {
		auth = "client_secret"
	}
	switch auth {
	case "client_secret":
		secret := string(cfg.ClientSecret)
		if secret == "" && cfg.ClientSecretFile != "" {
			b, err := os.ReadFile(cfg.ClientSecretFile)
			if err != nil {
				return nil, fmt.Errorf("graph: read client_secret_file: %w", err)
			}
			secret = strings.TrimSpace(string(b))
		}
		if secret == "" {
			return nil, fmt.Errorf("graph: auth client_secret: set one of client_secret or client_secret_file")
		}
		return azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, secret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: ep.Override})
	case "client_certificate":
		certs, key, err := readCertificate(cfg)
		if err != nil {
			return nil, err
		}
		return azidentity.NewClientCertificateCredential(cfg.TenantID, cfg.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: ep.Override})
	case "workload_identity":
		// Empty fields fall back to AZURE_CLIENT_ID, AZURE_TENANT_ID and
		// AZURE_FEDERATED_TOKEN_FILE, as the AKS webhook sets them.
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions:            opts,
			ClientID:                 cfg.ClientID,
			TenantID:                 cfg.TenantID,
			TokenFilePath:            cfg.TokenFile,
			DisableInstanceDiscovery: ep.Override,
		})
	case "managed_identity":
		o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if cfg.ClientID != "" {
			o.ID = azidentity.ClientID(cfg.ClientID) // user-assigned
		}
		return azidentity.NewManagedIdentityCredential(o)
	case "default":
		return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions:            opts,
			TenantID:                 cfg.TenantID,
			DisableInstanceDiscovery: ep.Override,
		})
	}
	return nil, fmt.Errorf("graph: unknown auth %q (want client_secret, client_certificate, workload_identity, managed_identity or default)", cfg.Auth)
}

// readCertificate reads graph.certificate_file (PEM, or PKCS#12 with
// certificate_password) as azidentity does: the application's certificate
// chain and its private key. Graph's credential and the self-service
// sign-in (NewSignIn) both use it.
func readCertificate(cfg config.Graph) ([]*x509.Certificate, crypto.PrivateKey, error) {
	if cfg.CertificateFile == "" {
		return nil, nil, fmt.Errorf("graph: auth client_certificate: certificate_file is required")
	}
	data, err := os.ReadFile(cfg.CertificateFile)
	if err != nil {
		return nil, nil, fmt.Errorf("graph: read certificate_file: %w", err)
	}
	var password []byte
	if cfg.CertificatePassword != "" {
		password = []byte(cfg.CertificatePassword)
	}
	certs, key, err := azidentity.ParseCertificates(data, password)
	if err != nil {
		return nil, nil, fmt.Errorf("graph: certificate_file %s: %w", cfg.CertificateFile, err)
	}
	return certs, key, nil
}

// refreshingCredential is the TokenCredential the authentication provider
// uses. azidentity caches tokens inside each credential and has no way to
// drop a cached token, so after a 401 the client replaces the whole
// credential: the next GetToken then asks Entra for a fresh token.
type refreshingCredential struct {
	build func() (azcore.TokenCredential, error)
	now   func() time.Time

	mu        sync.Mutex
	cur       azcore.TokenCredential
	gen       uint64
	refreshed time.Time

	issued atomic.Bool // a token request has succeeded since start
}

// minRefreshInterval keeps a burst of 401s (many users at once) from
// rebuilding the credential, and asking Entra for a token, for each call.
const minRefreshInterval = 10 * time.Second

func newRefreshingCredential(build func() (azcore.TokenCredential, error), now func() time.Time) (*refreshingCredential, error) {
	cur, err := build()
	if err != nil {
		return nil, err
	}
	return &refreshingCredential{build: build, now: now, cur: cur}, nil
}

// GetToken implements azcore.TokenCredential.
func (c *refreshingCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	tok, err := cur.GetToken(ctx, opts)
	if err == nil {
		c.issued.Store(true)
	}
	return tok, err
}

// generation identifies the current credential; pass it to refresh.
func (c *refreshingCredential) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// refresh replaces the credential if it is still generation gen (a
// concurrent caller may have replaced it already) and was not replaced in
// the last minRefreshInterval. It reports whether a retry may see a
// different token.
func (c *refreshingCredential) refresh(gen uint64) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return true, nil
	}
	if !c.refreshed.IsZero() && c.now().Sub(c.refreshed) < minRefreshInterval {
		return false, nil
	}
	next, err := c.build()
	if err != nil {
		return false, err
	}
	c.cur, c.refreshed = next, c.now()
	c.gen++
	return true, nil
}

// authHTTPClient is the transport azidentity uses: the same TLS settings
// (ca_file) as Graph calls. azcore keeps its own retry policy for token
// requests.
func authHTTPClient(base http.RoundTripper, timeout time.Duration) *http.Client {
	return &http.Client{Transport: base, Timeout: timeout}
}
