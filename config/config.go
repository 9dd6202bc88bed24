// Package config loads and validates the calpresence configuration file
// (docs/configuration.md).
//
// Load reads a file in these steps: defaults (Default), ${VAR} expansion,
// a strict decode, graph.client_secret_file, and Validate. Every problem is
// reported at once, each with its YAML path and line, in a *ValidationError:
//
//	config.yaml:12: schedule: unknown field "poll_intervl" (did you mean "poll_interval"?)
//	config.yaml:3: graph.tenant_id: environment variable AZURE_TENANT_ID is not set
//	config.yaml:30: sources[1].url: must be http(s) or file (got "ftp://host/feed.ics?<redacted>")
//
// Decisions the design leaves open, made here:
//   - ${NAME} expands in values only (never keys), after YAML parsing, so
//     a value with "#" or ": " cannot change the document. An unset variable
//     is an error; a set but empty one expands to "". "$" elsewhere stays;
//     "$${" is a literal "${".
//   - A key that is null or has no value counts as absent (default kept).
//   - Relative *_file paths are relative to the config file's directory.
//   - client_secret_file is read (and trimmed) at load into ClientSecret, and
//     ClientSecretFile is cleared, so the loaded Config validates as is;
//     state.dsn_file likewise into state.dsn.
//   - state.path is bbolt's: with state.driver postgres it is an error in the
//     file, and Load clears the default.
//   - In dry_run, credentials (tenant_id, client_id, secrets) may be empty.
//   - server.listen "" disables the HTTP server.
//   - A source's poll_interval of 0 (or none) inherits schedule.poll_interval.
//
// A Config prints safely: Secret values show as <secret>, the state DSN's
// password as xxxxx (RedactDSN), and source URLs (RedactURL) and header
// values are redacted by String, Redacted,
// yaml.Marshal, json.Marshal and fmt's %v, %+v and %#v.
package config

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/sources/ical"
)

// Config is the whole configuration file.
type Config struct {
	Graph    Graph    `yaml:"graph"`
	Presence Presence `yaml:"presence"`
	Schedule Schedule `yaml:"schedule"`
	State    State    `yaml:"state"`
	Server   Server   `yaml:"server"`
	Users    []User   `yaml:"users,omitempty"`
	Sources  []Source `yaml:"sources"`

	Webhooks *Webhooks `yaml:"webhooks,omitempty"` // live meeting signals; nil: off (webhooks.go)

	Selfservice Selfservice `yaml:"selfservice,omitempty"` // people's own page; off unless url is set (selfservice.go)

	// Path is the file the configuration was read from (not in YAML).
	Path string `yaml:"-"`
}

// Graph configures the Microsoft Graph client and its credentials.
type Graph struct {
	TenantID         string `yaml:"tenant_id"`
	ClientID         string `yaml:"client_id"`
	Auth             string `yaml:"auth"` // client_secret | client_certificate | workload_identity | managed_identity | default
	ClientSecret     Secret `yaml:"client_secret,omitempty"`
	ClientSecretFile string `yaml:"client_secret_file,omitempty"`
	CertificateFile  string `yaml:"certificate_file,omitempty"`
	// CertificatePassword protects an encrypted PKCS#12 certificate_file.
	CertificatePassword Secret `yaml:"certificate_password,omitempty"`
	// TokenFile is the federated token for workload_identity
	// (default $AZURE_FEDERATED_TOKEN_FILE).
	TokenFile     string `yaml:"token_file,omitempty"`
	Cloud         string `yaml:"cloud"` // public | usgov | usgov-dod | china
	Endpoint      string `yaml:"endpoint,omitempty"`
	AuthorityHost string `yaml:"authority_host,omitempty"`
	// CAFile adds PEM certificates to the trusted roots for Graph and the
	// authority (a TLS-inspecting proxy; the tests' fake servers).
	CAFile         string        `yaml:"ca_file,omitempty"`
	MaxConcurrency int           `yaml:"max_concurrency"`
	Timeout        time.Duration `yaml:"timeout"`
	// RateLimit caps presence calls per RateWindow (Graph: 10,000 per 30 s
	// per app per tenant).
	RateLimit  int           `yaml:"rate_limit"`
	RateWindow time.Duration `yaml:"rate_window"`
	// ReadbackInterval is how often the worker reads back what Teams
	// shows for everyone it holds a session for (and shortly after each
	// burst of sets); 0 turns the read-back off.
	ReadbackInterval time.Duration `yaml:"readback_interval"`
	DryRun           bool          `yaml:"dry_run,omitempty"`
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
	// OnlyConfigured limits match: attendees|organizer to people named in
	// users: (as a target) or in some source's fixed users: an invitation's
	// attendee list is written by whoever sent it.
	OnlyConfigured bool `yaml:"only_configured,omitempty"`
	// LeadBurst is how early a burst of starts larger than the rate
	// allows in a second may begin (0: never early; default 5s).
	LeadBurst time.Duration `yaml:"lead_burst"`
	// StatusMessage, when set, is the Teams status message set with each
	// span (e.g. "In a {vendor} meeting until {end}"), expiring at the
	// span's end; StatusMessagePlaceholders lists what it may name. A
	// message the person wrote is never replaced or cleared. Top level
	// only.
	StatusMessage string `yaml:"status_message,omitempty"`
}

// StatusMessagePlaceholders are what presence.status_message may name:
// the meeting's vendor (Zoom, Webex, else the source's name), its title,
// and the span's end (15:04) in the person's zone (users[].timezone),
// else schedule.timezone.
var StatusMessagePlaceholders = []string{"{vendor}", "{title}", "{end}"}

// statusMessagePlaceholder finds the placeholders of a status message.
var statusMessagePlaceholder = regexp.MustCompile(`\{[^{}]*\}`)

// StatusMessageFields returns the placeholders tmpl names, in order, as
// written (valid or not).
func StatusMessageFields(tmpl string) []string {
	return statusMessagePlaceholder.FindAllString(tmpl, -1)
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
	// IdentityRefresh is how often a resolved address is looked up again
	// in Entra, and an unknown one at most reported (default 24h).
	IdentityRefresh time.Duration `yaml:"identity_refresh"`
	// FetchConcurrency caps the feeds read at once, across scheduled
	// polls, the first pass and resyncs (default 16).
	FetchConcurrency int `yaml:"fetch_concurrency"`
	// MaxCopyAge is how long the last good copy of a failing feed keeps
	// counting: events that start more than MaxCopyAge after the copy was
	// last confirmed (fetched, or answered 304) are dropped, and the source
	// is reported stale (default 24h).
	MaxCopyAge time.Duration `yaml:"max_copy_age"`
	// MaxFeedEvents, MaxFeedOccurrences and MaxFeedPeople cap one feed's
	// VEVENTs, its occurrences within the window and the distinct people
	// it makes busy; a feed over a cap is refused like a broken one
	// (defaults 10,000, 50,000 and 2,000).
	MaxFeedEvents      int `yaml:"max_feed_events"`
	MaxFeedOccurrences int `yaml:"max_feed_occurrences"`
	MaxFeedPeople      int `yaml:"max_feed_people"`
	// CAFile adds PEM certificates to the trusted roots for https feeds (a
	// TLS-inspecting proxy, a private CA); graph.ca_file does the same for
	// Graph and Entra.
	CAFile string `yaml:"ca_file,omitempty"`
}

// State configures the durable state: a bbolt file, for one replica, or a
// PostgreSQL database any number of replicas share (docs/deploy.md).
type State struct {
	// Driver is bbolt (default) or postgres.
	Driver string `yaml:"driver"`
	// Path is the bbolt file; only used with driver bbolt (Load clears it
	// with postgres).
	Path string `yaml:"path,omitempty"`
	// DSN names the PostgreSQL database (driver postgres); it prints with
	// its password redacted.
	DSN DSN `yaml:"dsn,omitempty"`
	// DSNFile is a file holding the DSN, read (and trimmed) at load into
	// DSN, as graph.client_secret_file is.
	DSNFile string `yaml:"dsn_file,omitempty"`
}

// Server configures the HTTP listener for health, metrics and admin actions.
type Server struct {
	Listen         string `yaml:"listen"`
	AdminTokenFile string `yaml:"admin_token_file,omitempty"`
	// ShutdownTimeout bounds what SIGTERM waits for: Graph calls in
	// flight and admin requests (default 20s, under Kubernetes' 30 s
	// grace period).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Hostnames are the names the pages (/, /readyz, /metrics) answer in
	// Host besides loopback names and IP literals, e.g. the Service's
	// name or an internal DNS name; any other name is refused (421), so a
	// page on another site that rebinds its own name to our address reads
	// nothing. Matched case-insensitively, port and trailing dot ignored.
	Hostnames []string `yaml:"hostnames,omitempty"`
}

// User maps a calendar address to an Entra user.
type User struct {
	Email string `yaml:"email"`
	User  string `yaml:"user"` // UPN or object id
	// Timezone is the person's time zone (IANA name or Windows zone ID),
	// for the end time in their status message; "" is schedule.timezone.
	Timezone string `yaml:"timezone,omitempty"`
}

// Source is one ICS feed.
type Source struct {
	Name         string            `yaml:"name"`
	URL          string            `yaml:"url"`
	PollInterval time.Duration     `yaml:"poll_interval"`
	Headers      map[string]string `yaml:"headers,omitempty"`
	Users        []string          `yaml:"users,omitempty"`
	Match        string            `yaml:"match,omitempty"` // "", attendees, organizer
	Domains      []string          `yaml:"domains,omitempty"`
	Include      Filter            `yaml:"include,omitempty"`
	Exclude      Filter            `yaml:"exclude,omitempty"`
	Skip         Skip              `yaml:"skip,omitempty"`
	Timezone     string            `yaml:"timezone,omitempty"`
	// AllowPrivate lets the feed (and its redirects) reach link-local
	// addresses and cloud metadata services, refused otherwise: their
	// answers include the machine's credentials. Loopback and the private
	// ranges need no such permission.
	AllowPrivate bool `yaml:"allow_private,omitempty"`
	// Owner and PublicOnly are never read from YAML: the engine sets them
	// on the sources it makes of people's own feeds (selfservice.feeds).
	// Owner is that person's Entra object id; PublicOnly confines the feed
	// to public addresses (sources.FetchRequest.PublicOnly).
	Owner      string `yaml:"-"`
	PublicOnly bool   `yaml:"-"`

	// Presence overrides; zero values inherit from the top-level presence.
	Availability string         `yaml:"availability,omitempty"`
	Activity     string         `yaml:"activity,omitempty"`
	Lead         *time.Duration `yaml:"lead,omitempty"`
	Grace        *time.Duration `yaml:"grace,omitempty"`
	// OnlyConfigured overrides presence.only_configured for this source.
	OnlyConfigured *bool `yaml:"only_configured,omitempty"`
}

// Filter holds regular expressions matched against event fields. An empty
// field matches everything. For include, an event must match every set field;
// for exclude, matching any set field excludes it.
type Filter struct {
	Summary     string `yaml:"summary,omitempty"`
	Location    string `yaml:"location,omitempty"`
	Description string `yaml:"description,omitempty"`
}

// Skip says which kinds of occurrences do not make anyone busy.
// Nil means the default (all_day, transparent, declined: true; tentative: false).
type Skip struct {
	AllDay      *bool `yaml:"all_day,omitempty"`
	Transparent *bool `yaml:"transparent,omitempty"`
	Tentative   *bool `yaml:"tentative,omitempty"`
	Declined    *bool `yaml:"declined,omitempty"`
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

// GoString hides the value from %#v too.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.String()) }

// MarshalJSON hides the value when a config is written as JSON.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Values of graph.auth.
const (
	AuthClientSecret      = "client_secret"
	AuthClientCertificate = "client_certificate"
	AuthWorkloadIdentity  = "workload_identity"
	AuthManagedIdentity   = "managed_identity"
	AuthDefault           = "default" // azidentity's DefaultAzureCredential chain
)

// Values of graph.cloud.
const (
	CloudPublic   = "public"
	CloudUSGov    = "usgov"
	CloudUSGovDoD = "usgov-dod"
	CloudChina    = "china"
)

// Values of sources[].match.
const (
	MatchAttendees = "attendees"
	MatchOrganizer = "organizer"
)

// DefaultPath is the configuration file the commands read when neither
// -config nor $CALPRESENCE_CONFIG (PathEnv) names one; the container image
// and the manifests in deploy/ mount the configuration there.
const DefaultPath = "/etc/calpresence/config.yaml"

// PathEnv is the environment variable that names the configuration file
// when -config is not given.
const PathEnv = "CALPRESENCE_CONFIG"

// Default returns the configuration used for every key the file leaves out
// (docs/configuration.md). Sources have no defaults here: a source's
// poll_interval inherits schedule.poll_interval, and its presence and skip
// settings resolve through Presence.For and the Skip* methods.
func Default() *Config {
	return &Config{
		Graph: Graph{
			Auth:           AuthClientSecret,
			Cloud:          CloudPublic,
			MaxConcurrency: 100,
			Timeout:        30 * time.Second,
			RateLimit:      10000,
			RateWindow:     30 * time.Second,
			// Graph drops a session now and then without a word; five
			// minutes bounds how long someone shows Available in a meeting.
			ReadbackInterval: 5 * time.Minute,
		},
		Presence: Presence{
			Availability: presence.Busy,
			Activity:     presence.ActivityInAConferenceCall,
			MergeGap:     2 * time.Minute,
			MaxLease:     presence.MaxLease,
			LeadBurst:    5 * time.Second,
		},
		Schedule: Schedule{
			PollInterval:       5 * time.Minute,
			Horizon:            36 * time.Hour,
			Timezone:           "UTC",
			FetchTimeout:       30 * time.Second,
			MaxFeedBytes:       10 << 20,
			MaxOccurrences:     1000,
			IdentityRefresh:    24 * time.Hour,
			FetchConcurrency:   16,
			MaxCopyAge:         24 * time.Hour,
			MaxFeedEvents:      10000,
			MaxFeedOccurrences: 50000,
			MaxFeedPeople:      2000,
		},
		State:       State{Driver: DriverBbolt, Path: "/var/lib/calpresence/state.db"},
		Server:      Server{Listen: ":8080", ShutdownTimeout: 20 * time.Second},
		Selfservice: Selfservice{Listen: ":8082", MaxCall: 4 * time.Hour},
	}
}

// DefaultWebhooks returns the defaults of the webhooks: section, applied
// when the file has one. Default has no webhooks (without the section no
// listener starts), so they live here, next to it, and nowhere else: the
// listen address, the cap of an unscheduled call (8h: a lost "left"
// cannot keep anyone Busy longer) and Webex's API base.
func DefaultWebhooks() *Webhooks {
	return &Webhooks{
		Listen:         ":8081",
		MaxUnscheduled: 8 * time.Hour,
		Webex:          &WebexWebhook{API: "https://webexapis.com/v1"},
	}
}

// For returns the presence for events of source s: p with the source's
// availability, activity, lead and grace overrides applied.
func (p Presence) For(s Source) Presence {
	if s.Availability != "" {
		p.Availability = s.Availability
	}
	if s.Activity != "" {
		p.Activity = s.Activity
	}
	if s.Lead != nil {
		p.Lead = *s.Lead
	}
	if s.Grace != nil {
		p.Grace = *s.Grace
	}
	if s.OnlyConfigured != nil {
		p.OnlyConfigured = *s.OnlyConfigured
	}
	return p
}

// SourcePresence returns the presence for events of c.Sources[i]: the
// top-level presence with the source's overrides applied.
func (c *Config) SourcePresence(i int) Presence {
	return c.Presence.For(c.Sources[i])
}

// SourcePollInterval returns how often c.Sources[i] is polled: its own
// poll_interval, else schedule.poll_interval. (Load already fills in the
// inherited value; this serves Configs built in code.)
func (c *Config) SourcePollInterval(i int) time.Duration {
	if d := c.Sources[i].PollInterval; d > 0 {
		return d
	}
	if c.Schedule.PollInterval > 0 {
		return c.Schedule.PollInterval
	}
	return Default().Schedule.PollInterval
}

// SourceByName returns the source called name.
func (c *Config) SourceByName(name string) (*Source, bool) {
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i], true
		}
	}
	return nil, false
}

// Location returns the zone of schedule.timezone (UTC if empty or unknown;
// Validate reports an unknown zone).
func (c *Config) Location() *time.Location {
	return loadLocation(c.Schedule.Timezone, time.UTC)
}

// SourceLocation returns the zone for floating times of c.Sources[i] that
// carry no X-WR-TIMEZONE: the source's timezone, else schedule.timezone.
func (c *Config) SourceLocation(i int) *time.Location {
	return loadLocation(c.Sources[i].Timezone, c.Location())
}

// UserLocations returns the time zone of every users: target that has a
// timezone, keyed by user: as written; when several entries name one
// user, the first with a timezone wins. Others use Location.
func (c *Config) UserLocations() map[string]*time.Location {
	var out map[string]*time.Location
	for _, u := range c.Users {
		if u.Timezone == "" || u.User == "" {
			continue
		}
		if _, ok := out[u.User]; ok {
			continue
		}
		loc, err := ical.LoadZone(u.Timezone)
		if err != nil {
			continue // Validate reports it
		}
		if out == nil {
			out = make(map[string]*time.Location)
		}
		out[u.User] = loc
	}
	return out
}

func loadLocation(name string, fallback *time.Location) *time.Location {
	if name == "" {
		return fallback
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return fallback
	}
	return loc
}

// SkipAllDay reports whether all-day occurrences are skipped (default true).
func (s Source) SkipAllDay() bool { return boolOr(s.Skip.AllDay, true) }

// SkipTransparent reports whether TRANSP:TRANSPARENT and
// X-MICROSOFT-CDO-BUSYSTATUS:FREE occurrences are skipped (default true).
func (s Source) SkipTransparent() bool { return boolOr(s.Skip.Transparent, true) }

// SkipTentative reports whether TENTATIVE occurrences are skipped (default
// false).
func (s Source) SkipTentative() bool { return boolOr(s.Skip.Tentative, false) }

// SkipDeclined reports whether occurrences the matched attendee declined are
// skipped (default true).
func (s Source) SkipDeclined() bool { return boolOr(s.Skip.Declined, true) }

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// UserFor maps a calendar address (an optional "mailto:" prefix and case
// are ignored) to the Entra user configured for it in users:.
// It scans the list; for many lookups build a map once with UserIndex.
func (c *Config) UserFor(address string) (string, bool) {
	address = mailaddr.Normalize(address)
	for _, u := range c.Users {
		if mailaddr.Normalize(u.Email) == address {
			return u.User, true
		}
	}
	return "", false
}

// UserIndex returns users: as a map from lower-cased email to Entra user,
// for callers that look up many addresses (see mailaddr.Normalize).
func (c *Config) UserIndex() map[string]string {
	m := make(map[string]string, len(c.Users))
	for _, u := range c.Users {
		k := mailaddr.Normalize(u.Email)
		if _, ok := m[k]; !ok {
			m[k] = u.User
		}
	}
	return m
}

// ConfiguredUsers returns every person the configuration names, as written
// and without repeats (case-insensitive): the fixed users of every source,
// then the targets of users:. These are the people only_configured allows.
func (c *Config) ConfiguredUsers() []string {
	seen := make(map[string]bool)
	var out []string
	add := func(u string) {
		if k := mailaddr.Normalize(u); k != "" && !seen[k] {
			seen[k] = true
			out = append(out, u)
		}
	}
	for _, s := range c.Sources {
		for _, u := range s.Users {
			add(u)
		}
	}
	for _, u := range c.Users {
		add(u.User)
	}
	return out
}

// Summary describes c in one line for `calpresence validate`, e.g.
// "3 sources, 5 users (2 fixed, 3 mapped), dry run". Fixed users are those
// listed in sources' users:; mapped users are the targets of users:. With
// the state in PostgreSQL it names the database, the DSN redacted.
func (c *Config) Summary() string {
	fixed, mapped, all := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, s := range c.Sources {
		for _, u := range s.Users {
			fixed[mailaddr.Normalize(u)] = true
			all[mailaddr.Normalize(u)] = true
		}
	}
	for _, u := range c.Users {
		mapped[mailaddr.Normalize(u.User)] = true
		all[mailaddr.Normalize(u.User)] = true
	}
	out := fmt.Sprintf("%s, %s (%d fixed, %d mapped)",
		plural(len(c.Sources), "source"), plural(len(all), "user"), len(fixed), len(mapped))
	if c.State.Driver == DriverPostgres && c.State.DSN != "" {
		out += ", state in PostgreSQL at " + c.State.DSN.String()
	}
	if c.Graph.DryRun {
		out += ", dry run"
	}
	return out
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
