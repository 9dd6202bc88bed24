// Package config loads and validates the calpresence configuration file
// (DESIGN.md "Configuration").
package config

import "time"

// Config is the whole configuration file.
type Config struct {
	Graph    Graph    `yaml:"graph"`
	Presence Presence `yaml:"presence"`
	Schedule Schedule `yaml:"schedule"`
	State    State    `yaml:"state"`
	Server   Server   `yaml:"server"`
	Users    []User   `yaml:"users"`
	Sources  []Source `yaml:"sources"`

	// Path is the file the configuration was read from (not in YAML).
	Path string `yaml:"-"`
}

// Graph configures the Microsoft Graph client and its credentials.
type Graph struct {
	TenantID         string `yaml:"tenant_id"`
	ClientID         string `yaml:"client_id"`
	Auth             string `yaml:"auth"` // client_secret | client_certificate | workload_identity | managed_identity | default
	ClientSecret     Secret `yaml:"client_secret"`
	ClientSecretFile string `yaml:"client_secret_file"`
	CertificateFile  string `yaml:"certificate_file"`
	// CertificatePassword protects an encrypted PKCS#12 certificate_file.
	CertificatePassword Secret `yaml:"certificate_password"`
	// TokenFile is the federated token for workload_identity
	// (default $AZURE_FEDERATED_TOKEN_FILE).
	TokenFile     string `yaml:"token_file"`
	Cloud         string `yaml:"cloud"` // public | usgov | usgov-dod | china
	Endpoint      string `yaml:"endpoint"`
	AuthorityHost string `yaml:"authority_host"`
	// CAFile adds PEM certificates to the trusted roots for Graph and the
	// authority (a TLS-inspecting proxy; the tests' fake servers).
	CAFile         string        `yaml:"ca_file"`
	MaxConcurrency int           `yaml:"max_concurrency"`
	Timeout        time.Duration `yaml:"timeout"`
	// RateLimit caps presence calls per RateWindow (Graph: 10,000 per 30 s
	// per app per tenant).
	RateLimit  int           `yaml:"rate_limit"`
	RateWindow time.Duration `yaml:"rate_window"`
	DryRun     bool          `yaml:"dry_run"`
}

// Presence holds the presence settings; the top level gives defaults and
// every source may override each key.
type Presence struct {
	Availability string        `yaml:"availability"`
	Activity     string        `yaml:"activity"`
	Lead         time.Duration `yaml:"lead"`
	Grace        time.Duration `yaml:"grace"`
	MergeGap     time.Duration `yaml:"merge_gap"`
	MaxLease     time.Duration `yaml:"max_lease"`
}

// Schedule configures polling and the expansion window.
type Schedule struct {
	PollInterval time.Duration `yaml:"poll_interval"`
	Horizon      time.Duration `yaml:"horizon"`
	Timezone     string        `yaml:"timezone"`
	// FetchTimeout bounds one feed fetch (default 30s).
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// MaxFeedBytes caps a feed body (default 10 MiB).
	MaxFeedBytes int64 `yaml:"max_feed_bytes"`
	// MaxOccurrences caps the occurrences one event may expand into
	// within the window (default 1000).
	MaxOccurrences int `yaml:"max_occurrences"`
}

// State configures the durable state file.
type State struct {
	Path string `yaml:"path"`
}

// Server configures the HTTP listener for health, metrics and admin actions.
type Server struct {
	Listen         string `yaml:"listen"`
	AdminTokenFile string `yaml:"admin_token_file"`
}

// User maps a calendar address to an Entra user.
type User struct {
	Email string `yaml:"email"`
	User  string `yaml:"user"` // UPN or object id
}

// Source is one ICS feed.
type Source struct {
	Name         string            `yaml:"name"`
	URL          string            `yaml:"url"`
	PollInterval time.Duration     `yaml:"poll_interval"`
	Headers      map[string]string `yaml:"headers"`
	Users        []string          `yaml:"users"`
	Match        string            `yaml:"match"` // "", attendees, organizer
	Domains      []string          `yaml:"domains"`
	Include      Filter            `yaml:"include"`
	Exclude      Filter            `yaml:"exclude"`
	Skip         Skip              `yaml:"skip"`
	Timezone     string            `yaml:"timezone"`

	// Presence overrides; zero values inherit from the top-level presence.
	Availability string         `yaml:"availability"`
	Activity     string         `yaml:"activity"`
	Lead         *time.Duration `yaml:"lead"`
	Grace        *time.Duration `yaml:"grace"`
}

// Filter holds regular expressions matched against event fields. An empty
// field matches everything. For include, an event must match every set field;
// for exclude, matching any set field excludes it.
type Filter struct {
	Summary     string `yaml:"summary"`
	Location    string `yaml:"location"`
	Description string `yaml:"description"`
}

// Skip says which kinds of occurrences do not make anyone busy.
// Nil means the default (all_day, transparent, declined: true; tentative: false).
type Skip struct {
	AllDay      *bool `yaml:"all_day"`
	Transparent *bool `yaml:"transparent"`
	Tentative   *bool `yaml:"tentative"`
	Declined    *bool `yaml:"declined"`
}

// Secret is a string that prints as <secret>.
type Secret string

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<secret>"
}

// MarshalYAML hides the value when a config is dumped.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }
