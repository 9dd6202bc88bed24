package graph

import (
	"net/http"
	"time"

	"github.com/calpresence/calpresence/config"
)

// SignIn is what signing people in with Entra (the self-service page)
// needs from the graph block: the authority the worker's own tokens come
// from, and an HTTP client that trusts what Graph's client trusts.
type SignIn struct {
	// Authority is the Entra authority host with a trailing slash, e.g.
	// https://login.microsoftonline.com/: graph.authority_host, else the
	// one of graph.cloud.
	Authority string
	// HTTPClient trusts graph.ca_file as well as the system's roots.
	HTTPClient *http.Client
}

// signInTimeout bounds one request to the authority (discovery, keys,
// code exchange): a person waits on it.
const signInTimeout = 30 * time.Second

// NewSignIn returns the authority and HTTP client for signing people in
// with the application of cfg.
func NewSignIn(cfg config.Graph) (SignIn, error) {
	ep, err := resolveEndpoints(cfg)
	if err != nil {
		return SignIn{}, err
	}
	t, err := newBaseTransport(cfg.CAFile, 4)
	if err != nil {
		return SignIn{}, err
	}
	return SignIn{Authority: ep.Authority, HTTPClient: &http.Client{Transport: t, Timeout: signInTimeout}}, nil
}
