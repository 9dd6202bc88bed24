package config

import (
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Selfservice configures the people's own page (docs/selfservice.md): a
// listener of its own, exposed through the ingress, where each person signs
// in with Entra ID. It is on when URL is set; the block's other keys have
// defaults (Default).
type Selfservice struct {
	// Listen is the self-service listener's address (default ":8082").
	Listen string `yaml:"listen"`
	// URL is what people type, e.g. https://presence.contoso.com; the
	// sign-in redirect URI registered in Entra is URL + "/auth/callback".
	// http is allowed on loopback only (a test, a laptop).
	URL string `yaml:"url,omitempty"`
	// CookieKeyFile holds 32 or more random bytes that sign and encrypt
	// the session cookie.
	CookieKeyFile string `yaml:"cookie_key_file,omitempty"`
	// Feeds lets people add their own ICS feed URLs (default false).
	Feeds bool `yaml:"feeds,omitempty"`
	// PrivateFeeds lets people's own feeds reach loopback and private
	// addresses (default false: the internet only, for a URL a person
	// types must not read what only the worker's network reaches). For a
	// lab or a test.
	PrivateFeeds bool `yaml:"private_feeds,omitempty"`
	// MaxCall is the longest "I'm on a call" (default 4h).
	MaxCall time.Duration `yaml:"max_call"`
}

// Enabled reports whether self-service is on: selfservice.url is set.
func (s Selfservice) Enabled() bool { return s.URL != "" }

// IsZero reports whether self-service is off, so that a dumped
// configuration leaves the block (and its defaults) out when it is.
func (s Selfservice) IsZero() bool { return !s.Enabled() }

// MinCookieKey is the least number of bytes selfservice.cookie_key_file
// must hold.
const MinCookieKey = 32

func (c *Config) validateSelfservice(k *checker) {
	s := c.Selfservice
	if !s.Enabled() {
		if _, inFile := k.lines["selfservice"]; inFile {
			k.add("selfservice.url", "required: the URL people open (the self-service page is on when it is set)")
		}
		return
	}
	u, err := url.Parse(s.URL)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		k.add("selfservice.url", "must be an absolute http(s) URL such as https://presence.contoso.com (got %q)", s.URL)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "":
		k.add("selfservice.url", "must be scheme and host only, without path, query or user info (got %q)", s.URL)
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
		k.add("selfservice.url", "http is allowed on loopback only: the session cookie must travel over TLS (got %q)", s.URL)
	}
	if _, port, err := net.SplitHostPort(s.Listen); err != nil || func() bool { _, err := strconv.ParseUint(port, 10, 16); return err != nil }() {
		k.add("selfservice.listen", "must be host:port such as \":8082\" (got %q)", s.Listen)
	} else if s.Listen == c.Server.Listen {
		k.add("selfservice.listen", "must differ from server.listen (%q): the self-service listener is the one exposed to people", s.Listen)
	} else if c.Webhooks != nil && s.Listen == c.Webhooks.Listen {
		k.add("selfservice.listen", "must differ from webhooks.listen (%q)", s.Listen)
	}
	if s.CookieKeyFile == "" {
		k.add("selfservice.cookie_key_file", "required: a file of %d or more random bytes (head -c 32 /dev/urandom > key)", MinCookieKey)
	}
	if s.PrivateFeeds && !s.Feeds {
		k.add("selfservice.private_feeds", "applies to people's own feeds: set feeds: true too, or leave it out")
	}
	if s.MaxCall < 5*time.Minute {
		k.add("selfservice.max_call", "must be at least 5m (got %s)", s.MaxCall)
	}
	// Entra redeems a sign-in's code for a confidential client that
	// proves itself with its own secret or certificate. A workload or
	// managed identity (and default, which may resolve to either) gets
	// tokens for the worker alone: it has no credential to send.
	if c.Graph.Auth != AuthClientSecret && c.Graph.Auth != AuthClientCertificate {
		k.add("selfservice", "sign-in needs graph.auth client_secret or client_certificate (auth is %s): Entra redeems a person's sign-in only for an application that sends its own secret or certificate, which a workload or managed identity does not have", c.Graph.Auth)
	}
}

// isLoopbackHost reports whether host is localhost or a loopback address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkCookieKey checks selfservice.cookie_key_file: readable and holding
// at least MinCookieKey bytes.
func checkCookieKey(k *checker, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		k.add("selfservice.cookie_key_file", "%v", err)
		return
	}
	if len(data) < MinCookieKey {
		k.add("selfservice.cookie_key_file", "%s holds %d bytes; want at least %d random bytes (head -c 32 /dev/urandom > %s)", path, len(data), MinCookieKey, path)
	}
}
