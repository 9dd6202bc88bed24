package graph

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"

	"github.com/calpresence/calpresence/config"
)

// endpoints are where the client sends Graph calls and token requests.
type endpoints struct {
	// Graph is the Graph base URL without a trailing slash,
	// e.g. https://graph.microsoft.com/v1.0.
	Graph string
	// Authority is the Entra authority host with a trailing slash,
	// e.g. https://login.microsoftonline.com/.
	Authority string
	// Scope is the app-only scope for Graph: "<scheme>://<host>/.default".
	Scope string
	// Host is Graph's host name (no port): the only host the
	// authentication provider attaches tokens for.
	Host string
	// Override is set when endpoint or authority_host is configured: the
	// client then contacts those hosts and nothing else (no instance
	// discovery).
	Override bool
	// Cloud is the azcore cloud configuration for azidentity.
	Cloud cloud.Configuration
}

// cloudPreset holds the national-cloud endpoints of graph.cloud.
type cloudPreset struct {
	graph, authority string
	azcore           cloud.Configuration
}

// cloudPresets maps graph.cloud to its Graph and Entra endpoints (Graph
// docs, "National cloud deployments").
var cloudPresets = map[string]cloudPreset{
	"public":    {"https://graph.microsoft.com/v1.0", "https://login.microsoftonline.com/", cloud.AzurePublic},
	"usgov":     {"https://graph.microsoft.us/v1.0", "https://login.microsoftonline.us/", cloud.AzureGovernment},
	"usgov-dod": {"https://dod-graph.microsoft.us/v1.0", "https://login.microsoftonline.us/", cloud.AzureGovernment},
	"china":     {"https://microsoftgraph.chinacloudapi.cn/v1.0", "https://login.chinacloudapi.cn/", cloud.AzureChina},
}

// resolveEndpoints turns graph.cloud, graph.endpoint and
// graph.authority_host into the endpoints the client uses. An empty cloud
// is public.
func resolveEndpoints(cfg config.Graph) (endpoints, error) {
	name := cfg.Cloud
	if name == "" {
		name = "public"
	}
	p, ok := cloudPresets[name]
	if !ok {
		return endpoints{}, fmt.Errorf("graph: unknown cloud %q (want public, usgov, usgov-dod or china)", cfg.Cloud)
	}
	ep := endpoints{Graph: p.graph, Authority: p.authority, Cloud: p.azcore}
	if cfg.Endpoint != "" {
		u, err := httpsURL("endpoint", cfg.Endpoint)
		if err != nil {
			return endpoints{}, err
		}
		ep.Graph = strings.TrimRight(u.String(), "/")
		ep.Override = true
	}
	if cfg.AuthorityHost != "" {
		u, err := httpsURL("authority_host", cfg.AuthorityHost)
		if err != nil {
			return endpoints{}, err
		}
		ep.Authority = strings.TrimRight(u.String(), "/") + "/"
		ep.Override = true
	}
	if ep.Override {
		// A custom cloud: azidentity must talk to this authority and,
		// with instance discovery disabled, to nothing else.
		ep.Cloud = cloud.Configuration{
			ActiveDirectoryAuthorityHost: ep.Authority,
			Services:                     map[cloud.ServiceName]cloud.ServiceConfiguration{},
		}
	}
	u, _ := url.Parse(ep.Graph)
	ep.Scope = u.Scheme + "://" + u.Host + "/.default"
	ep.Host = strings.ToLower(u.Hostname())
	return ep, nil
}

// httpsURL parses an endpoint override: an absolute https URL with a host,
// no query, fragment or user info.
func httpsURL(key, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("graph: %s: %w", key, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("graph: %s must be an https URL (got %q)", key, u.Redacted())
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("graph: %s must not carry user info, a query or a fragment", key)
	}
	return u, nil
}
