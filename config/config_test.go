package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/sources"
	"github.com/google/go-cmp/cmp"
)

// env returns a lookup function over m, in place of os.LookupEnv.
func env(m map[string]string) lookupFunc {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

func loadWith(t *testing.T, path string, lookup lookupFunc) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parse(data, path, lookup)
}

func ptr[T any](v T) *T { return &v }

var fullEnv = map[string]string{
	"AZURE_TENANT_ID":     "contoso.onmicrosoft.com",
	"AZURE_CLIENT_SECRET": "s3cr3t#with: yaml chars",
	"ZOOM_TOKEN":          "zt0k3n",
	"FEED_TOKEN":          "ft0k3n",
}

func TestLoadFull(t *testing.T) {
	got, err := loadWith(t, "testdata/valid-full.yaml", env(fullEnv))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{
		Path: "testdata/valid-full.yaml",
		Graph: Graph{
			TenantID:         "contoso.onmicrosoft.com",
			ClientID:         "11111111-2222-3333-4444-555555555555",
			Auth:             "client_secret",
			ClientSecret:     "s3cr3t#with: yaml chars",
			Cloud:            "usgov",
			Endpoint:         "https://graph.microsoft.us/v1.0",
			AuthorityHost:    "https://login.microsoftonline.us/",
			CAFile:           "/etc/ssl/proxy.pem",
			MaxConcurrency:   8,
			Timeout:          45 * time.Second,
			RateLimit:        5000,
			RateWindow:       time.Minute,
			ReadbackInterval: 2 * time.Minute,
		},
		Presence: Presence{
			Availability:   "Busy",
			Activity:       "InACall",
			Lead:           time.Minute,
			Grace:          30 * time.Second,
			MergeGap:       5 * time.Minute,
			MaxLease:       90 * time.Minute,
			OnlyConfigured: true,
			LeadBurst:      5 * time.Second,
		},
		Schedule: Schedule{
			PollInterval:    10 * time.Minute,
			Horizon:         48 * time.Hour,
			Timezone:        "Europe/Berlin",
			FetchTimeout:    20 * time.Second,
			MaxFeedBytes:    1 << 20,
			MaxOccurrences:  500,
			IdentityRefresh: 12 * time.Hour,

			FetchConcurrency:   8,
			MaxCopyAge:         12 * time.Hour,
			MaxFeedEvents:      5000,
			MaxFeedOccurrences: 20000,
			MaxFeedPeople:      300,
		},
		State: State{Driver: "bbolt", Path: "/data/state.db"},
		Server: Server{Listen: "127.0.0.1:9090", AdminTokenFile: "/run/secrets/calpresence-admin", ShutdownTimeout: 25 * time.Second,
			Hostnames: []string{"calpresence.internal", "calpresence.ops.svc.cluster.local."}},
		Selfservice: Selfservice{Listen: ":9443", URL: "https://presence.contoso.com",
			CookieKeyFile: "/run/secrets/calpresence-cookie", Feeds: true, MaxCall: 2 * time.Hour},
		Users: []User{
			{Email: "alice@partner.example", User: "alice@contoso.com"},
			{Email: "Bob@Partner.example", User: "6f1c2d3e-0000-4000-8000-000000000001"},
		},
		Sources: []Source{
			{
				Name:         "zoom-sales",
				URL:          "https://example.zoom.us/feed.ics?token=zt0k3n",
				PollInterval: 2 * time.Minute,
				Headers:      map[string]string{"Authorization": "Bearer ft0k3n"},
				AllowPrivate: true,
				Users:        []string{"alice@contoso.com", "carol@contoso.com"},
				Include:      Filter{Summary: "(?i)zoom|webex", Location: `zoom\.us|webex\.com`, Description: "meeting"},
				Exclude:      Filter{Summary: "(?i)focus time", Location: "home", Description: "optional"},
				Skip:         Skip{AllDay: ptr(false), Transparent: ptr(false), Tentative: ptr(true), Declined: ptr(false)},
				Timezone:     "America/New_York",
				Availability: "Busy",
				Activity:     "InAConferenceCall",
				Lead:         ptr(2 * time.Minute),
				Grace:        ptr(time.Duration(0)),
			},
			{
				Name:         "outlook-team",
				URL:          "file:///srv/feeds/team.ics",
				PollInterval: 10 * time.Minute, // inherited from schedule
				Match:        "attendees",
				Domains:      []string{"contoso.com", "partner.example"},
			},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load(valid-full.yaml) mismatch (-want +got):\n%s", diff)
	}
	// A loaded config stays valid when validated again.
	if err := got.Validate(); err != nil {
		t.Errorf("Validate() after Load = %v; want nil", err)
	}
}

func TestLoadDefaults(t *testing.T) {
	got, err := Load("testdata/valid-minimal.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Default()
	want.Path = "testdata/valid-minimal.yaml"
	want.Graph.TenantID, want.Graph.ClientID, want.Graph.ClientSecret = "t", "c", "s"
	want.Sources = []Source{{
		Name:         "zoom",
		URL:          "https://example.zoom.us/feed.ics",
		Users:        []string{"alice@contoso.com"},
		PollInterval: 5 * time.Minute,
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load(valid-minimal.yaml) mismatch (-want +got):\n%s", diff)
	}

	// The documented defaults, spelled out once so a change to Default is
	// a visible change to this test.
	d := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"graph.auth", d.Graph.Auth, "client_secret"},
		{"graph.cloud", d.Graph.Cloud, "public"},
		{"graph.max_concurrency", d.Graph.MaxConcurrency, 100},
		{"graph.timeout", d.Graph.Timeout, 30 * time.Second},
		{"graph.rate_limit", d.Graph.RateLimit, 10000},
		{"graph.rate_window", d.Graph.RateWindow, 30 * time.Second},
		{"graph.readback_interval", d.Graph.ReadbackInterval, 5 * time.Minute},
		{"presence.availability", d.Presence.Availability, "Busy"},
		{"presence.activity", d.Presence.Activity, "InAConferenceCall"},
		{"presence.lead", d.Presence.Lead, time.Duration(0)},
		{"presence.grace", d.Presence.Grace, time.Duration(0)},
		{"presence.merge_gap", d.Presence.MergeGap, 2 * time.Minute},
		{"presence.max_lease", d.Presence.MaxLease, 4 * time.Hour},
		{"schedule.poll_interval", d.Schedule.PollInterval, 5 * time.Minute},
		{"schedule.horizon", d.Schedule.Horizon, 36 * time.Hour},
		{"schedule.timezone", d.Schedule.Timezone, "UTC"},
		{"schedule.fetch_timeout", d.Schedule.FetchTimeout, 30 * time.Second},
		{"schedule.max_feed_bytes", d.Schedule.MaxFeedBytes, int64(10 << 20)},
		{"schedule.max_occurrences", d.Schedule.MaxOccurrences, 1000},
		{"schedule.fetch_concurrency", d.Schedule.FetchConcurrency, 16},
		{"schedule.max_copy_age", d.Schedule.MaxCopyAge, 24 * time.Hour},
		{"schedule.max_feed_events", d.Schedule.MaxFeedEvents, 10000},
		{"schedule.max_feed_occurrences", d.Schedule.MaxFeedOccurrences, 50000},
		{"schedule.max_feed_people", d.Schedule.MaxFeedPeople, 2000},
		{"state.driver", d.State.Driver, "bbolt"},
		{"state.path", d.State.Path, "/var/lib/calpresence/state.db"},
		{"server.listen", d.Server.Listen, ":8080"},
		{"server.hostnames (none: loopback and IP literals only)", len(d.Server.Hostnames), 0},
		{"selfservice.listen", d.Selfservice.Listen, ":8082"},
		{"selfservice.max_call", d.Selfservice.MaxCall, 4 * time.Hour},
		{"selfservice.feeds", d.Selfservice.Feeds, false},
		{"selfservice (off: no url)", d.Selfservice.Enabled(), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("Default() %s = %v; want %v", c.name, c.got, c.want)
		}
	}
	s := got.Sources[0]
	if s.AllowPrivate {
		t.Error("default sources[0].allow_private = true; want false")
	}
	if !s.SkipAllDay() || !s.SkipTransparent() || s.SkipTentative() || !s.SkipDeclined() {
		t.Errorf("default skip = all_day %v, transparent %v, tentative %v, declined %v; want true, true, false, true",
			s.SkipAllDay(), s.SkipTransparent(), s.SkipTentative(), s.SkipDeclined())
	}
}

// A key with an empty value or null counts as absent: the default stays.
func TestLoadNullKeepsDefault(t *testing.T) {
	data := []byte(`graph: {tenant_id: t, client_id: c, client_secret: s}
presence:
schedule:
  poll_interval: ~
  horizon: null
sources:
  - {name: a, url: "https://x.example/a.ics", users: [u@x.example], lead: ~}
`)
	c, err := parse(data, "config.yaml", env(nil))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	d := Default()
	if c.Presence != d.Presence || c.Schedule.PollInterval != d.Schedule.PollInterval || c.Schedule.Horizon != d.Schedule.Horizon {
		t.Errorf("Parse: presence %+v, schedule %+v; want the defaults", c.Presence, c.Schedule)
	}
	if c.Sources[0].Lead != nil {
		t.Errorf("Parse: sources[0].lead = %v; want nil", *c.Sources[0].Lead)
	}
}

func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		file string
		// want is without the "testdata/invalid-<file>.yaml" prefix. For
		// the files-* rules, Load passes and CheckFiles reports it (what
		// run needs from the file system).
		want string
	}{
		// Decoding: strict keys, types, syntax.
		{"unknown-field", `:10: schedule: unknown field "poll_intervl" (did you mean "poll_interval"?)`},
		{"unknown-top-field", `:1: unknown field "grpah" (did you mean "graph"?)`},
		{"unknown-source-field", `:8: sources[0]: unknown field "user" (did you mean "users"?)`},
		{"duplicate-key", `:5: graph: duplicate key "client_id" (first at line 3)`},
		{"syntax", `:11: mapping values are not allowed in this context`},
		{"two-documents", `:9: only one YAML document is allowed`},
		{"duration", `:10: schedule.poll_interval: invalid duration "5 minutes" (use Go durations such as 90s, 5m, 1h30m)`},
		{"duration-unitless", `:10: presence.lead: invalid duration "90" (use Go durations such as 90s, 5m, 1h30m)`},
		{"integer", `:5: graph.max_concurrency: must be an integer (got "four")`},
		{"bool", `:5: graph.dry_run: must be true or false (got "maybe")`},
		{"not-a-list", `:8: sources[0].users: must be a list, not "alice@contoso.com"`},
		{"not-a-mapping", `:5: schedule: must be a mapping, not "5m"`},
		{"env-unset", `:2: graph.tenant_id: environment variable AZURE_TENANT_ID is not set`},
		{"env-bad-ref", `:2: graph.tenant_id: invalid variable reference "${AZURE-TENANT}" (want ${NAME}; write $${ for a literal ${)`},

		// Graph.
		{"graph-required", ":1: graph.tenant_id: required (unless dry_run)\n" +
			"FILE:1: graph.client_id: required (unless dry_run)"},
		{"graph-auth", `:5: graph.auth: must be one of client_secret, client_certificate, workload_identity, managed_identity, default (got "password")`},
		{"graph-client-secret-both", `:1: graph: set one of client_secret or client_secret_file`},
		{"graph-client-secret-none", `:1: graph: set one of client_secret or client_secret_file`},
		{"graph-client-secret-file", `:4: graph.client_secret_file: open testdata/does-not-exist: no such file or directory`},
		{"graph-certificate", `:1: graph.certificate_file: required with auth client_certificate`},
		{"graph-secret-other-auth", ":4: graph.client_secret: only used with auth client_secret (auth is managed_identity)\n" +
			"FILE:6: graph.certificate_password: only used with auth client_certificate (auth is managed_identity)"},
		{"graph-cloud", `:5: graph.cloud: must be one of public, usgov, usgov-dod, china (got "azure-germany")`},
		{"graph-cloud-china", ":5: graph.cloud: china: Microsoft Graph documents setPresence for the global service and US Government L4/L5 only, " +
			"not for the service operated by 21Vianet; set graph.endpoint explicitly to try it anyway"},
		{"graph-endpoint", ":5: graph.endpoint: must be an https URL (got \"http://graph.example/v1.0\")\n" +
			"FILE:6: graph.authority_host: must be an https URL (got \"login.example\")"},
		{"graph-limits", ":5: graph.max_concurrency: must be at least 1 (got 0)\n" +
			"FILE:6: graph.timeout: must be positive (got 0s)\n" +
			"FILE:7: graph.rate_limit: must be at least 1 (got 0)\n" +
			"FILE:8: graph.rate_window: must be positive (got -1s)\n" +
			"FILE:9: graph.readback_interval: must be 0 (off) or at least 1s (got 500ms)"},

		// Presence.
		{"presence-pair", `:11: presence.activity: availability/activity Available/InAConferenceCall is not allowed by Graph (allowed: Available/Available, Busy/InACall, Busy/InAConferenceCall, Away/Away, DoNotDisturb/Presenting)`},
		{"presence-status-message", ":6: presence.status_message: unknown placeholder {until} (known: {vendor}, {title}, {end})"},
		{"presence-negative", ":10: presence.lead: must not be negative (got -1m0s)\n" +
			"FILE:11: presence.grace: must not be negative (got -1s)\n" +
			"FILE:12: presence.merge_gap: must not be negative (got -2m0s)\n" +
			"FILE:13: presence.lead_burst: must not be negative (got -5s)"},
		{"presence-max-lease", `:10: presence.max_lease: must be between 5m and 4h (got 2m0s)`},

		// Schedule, state, server.
		{"schedule-poll-interval", `:10: schedule.poll_interval: must be at least 1s (got 0s)`},
		{"schedule-horizon", `:10: schedule.horizon: must be positive (got 0s)`},
		{"schedule-timezone", `:10: schedule.timezone: unknown time zone "Mars/Olympus_Mons" (want an IANA name such as Europe/Berlin)`},
		{"schedule-limits", ":10: schedule.fetch_timeout: must be positive (got 0s)\n" +
			"FILE:11: schedule.max_feed_bytes: must be at least 1 (got 0)\n" +
			"FILE:12: schedule.max_occurrences: must be at least 1 (got -1)\n" +
			"FILE:13: schedule.identity_refresh: must be at least 1m (got 30s)"},
		{"schedule-feed-limits", ":10: schedule.fetch_concurrency: must be at least 1 (got 0)\n" +
			"FILE:11: schedule.max_feed_events: must be at least 1 (got 0)\n" +
			"FILE:12: schedule.max_feed_occurrences: must be at least 1 (got -5)\n" +
			"FILE:13: schedule.max_feed_people: must be at least 1 (got 0)\n" +
			"FILE:14: schedule.max_copy_age: must be at least 1m (got 30s)"},
		{"state-path", `:10: state.path: required`},
		{"state-driver", `:10: state.driver: must be one of bbolt, postgres (got "mysql")`},
		{"state-dsn-none", `:9: state: set one of dsn or dsn_file (driver postgres)`},
		{"state-dsn-both", `:9: state: set one of dsn or dsn_file (driver postgres)`},
		{"state-dsn-parse", `:11: state.dsn: pgx cannot parse it: invalid port (got "postgres://xxxxx@db.example:notaport/calpresence")`},
		{"state-dsn-file", `:11: state.dsn_file: open testdata/does-not-exist: no such file or directory`},
		{"state-dsn-file-parse", `:11: state.dsn_file: testdata/bad-dsn: pgx cannot parse it: invalid port (got "host=db.example user=calpresence password=xxxxx port=99999999 dbname=calpresence")`},
		{"state-dsn-bbolt", `:11: state.dsn: only used with driver postgres (driver is bbolt)`},
		{"state-path-postgres", `:12: state.path: only used with driver bbolt (driver is postgres)`},
		{"server-listen", `:10: server.listen: must be host:port such as ":8080" or "127.0.0.1:8080" (got "8080")`},
		{"server-shutdown-timeout", `:10: server.shutdown_timeout: must be positive (got 0s)`},
		{"server-hostnames", ":12: server.hostnames[1]: must be a DNS name such as calpresence.internal, without scheme, port or path (got \"https://calpresence.internal\")\n" +
			"FILE:13: server.hostnames[2]: must be a DNS name such as calpresence.internal, without scheme, port or path (got \"calpresence.internal:8080\")\n" +
			"FILE:14: server.hostnames[3]: must be a DNS name such as calpresence.internal, without scheme, port or path (got \"calpresence.internal/status\")\n" +
			"FILE:15: server.hostnames[4]: must be a DNS name such as calpresence.internal, without scheme, port or path (got \"\")\n" +
			"FILE:16: server.hostnames[5]: must be a DNS name such as calpresence.internal, without scheme, port or path (got \"bad_name.example\")\n" +
			"FILE:17: server.hostnames[6]: must be a DNS name such as calpresence.internal, without scheme, port or path (got \"-calpresence.example\")\n" +
			"FILE:18: server.hostnames[7]: must be a DNS name such as calpresence.internal, without scheme, port or path (got \"calpresence..internal\")\n" +
			"FILE:19: server.hostnames[8]: must be a DNS name such as calpresence.internal, without scheme, port or path (got \"10.0.0\")"},
		{"server-hostnames-wildcard", `:11: server.hostnames[0]: wildcards are not supported; list each name (got "*.example.com")`},
		{"server-hostnames-ip", ":11: server.hostnames[0]: IP literals are answered without being listed; list names only (got \"10.0.0.5\")\n" +
			"FILE:12: server.hostnames[1]: IP literals are answered without being listed; list names only (got \"[::1]\")\n" +
			"FILE:13: server.hostnames[2]: IP literals are answered without being listed; list names only (got \"fe80::1\")"},
		{"server-hostnames-duplicate", `:13: server.hostnames[2]: duplicate name "Calpresence.Internal." (also server.hostnames[0])`},

		// Webhooks.
		{"webhooks-listen", `:10: webhooks.listen: must be host:port such as ":8081" (got "8081")`},
		{"webhooks-listen-same", `:12: webhooks.listen: must differ from server.listen (":8080"): the webhook listener is the one exposed to Zoom and Webex`},
		{"webhooks-none", `:9: webhooks: set zoom, webex or both`},
		{"webhooks-zoom-secret", `:10: webhooks.zoom: set one of secret_token or secret_token_file`},
		{"webhooks-webex-secret", `:10: webhooks.webex: set one of secret or secret_file`},
		{"webhooks-secret-file", `:11: webhooks.webex.secret_file: open testdata/does-not-exist: no such file or directory`},
		{"webhooks-webex-api", `:12: webhooks.webex.api: must be an http(s) URL such as "https://webexapis.com/v1" (got "webexapis.com")`},
		{"webhooks-max-unscheduled", `:11: webhooks.max_unscheduled: must be positive (got -1h0m0s)`},

		// Self-service.
		{"selfservice-url-required", `:9: selfservice.url: required: the URL people open (the self-service page is on when it is set)`},
		{"selfservice-url-scheme", `:10: selfservice.url: must be an absolute http(s) URL such as https://presence.contoso.com (got "ftp://presence.contoso.com")`},
		{"selfservice-url-path", `:10: selfservice.url: must be scheme and host only, without path, query or user info (got "https://presence.contoso.com/me?x=1")`},
		{"selfservice-url-http", `:10: selfservice.url: http is allowed on loopback only: the session cookie must travel over TLS (got "http://presence.contoso.com")`},
		{"selfservice-listen", `:10: selfservice.listen: must be host:port such as ":8082" (got "8082")`},
		{"selfservice-listen-same", `:12: selfservice.listen: must differ from server.listen (":8080"): the self-service listener is the one exposed to people`},
		{"selfservice-listen-webhooks", `:13: selfservice.listen: must differ from webhooks.listen (":8443")`},
		{"selfservice-cookie-key", `:9: selfservice.cookie_key_file: required: a file of 32 or more random bytes (head -c 32 /dev/urandom > key)`},
		{"selfservice-max-call", `:12: selfservice.max_call: must be at least 5m (got 1m0s)`},
		{"selfservice-private-feeds", `:12: selfservice.private_feeds: applies to people's own feeds: set feeds: true too, or leave it out`},
		{"selfservice-auth", `:10: selfservice: sign-in needs graph.auth client_secret or client_certificate (auth is workload_identity): Entra redeems a person's sign-in only for an application that sends its own secret or certificate, which a workload or managed identity does not have`},

		// Users.
		{"users-required", ":10: users[0].user: required\nFILE:11: users[1].email: required"},
		{"users-duplicate", `:12: users[1].email: duplicate email "Alice@Partner.Example" (also users[0])`},
		{"users-email", `:10: users[0].email: must be an email address (got "alice")`},
		{"users-timezone", `:15: users[1].timezone: unknown time zone "Europe/Atlantis" (want an IANA name such as Europe/Berlin or a Windows zone such as W. Europe Standard Time)`},

		// Sources.
		{"no-sources", `: sources: at least one source is required`},
		{"source-name-missing", `:6: sources[0].name: required`},
		{"source-name-invalid", `:6: sources[0].name: must be lower-case letters, digits and - (got "Zoom_Sales")`},
		{"source-name-duplicate", `:9: sources[1].name: duplicate name "zoom" (also sources[0])`},
		{"source-url-missing", `:6: sources[0].url: required`},
		{"source-url-scheme", `:10: sources[1].url: must be http(s) or file (got "ftp://<redacted>@ftp.example/feed.ics?<redacted>")`},
		{"source-url-host", `:7: sources[0].url: missing host (got "https:///feed.ics")`},
		{"source-users-and-match", `:6: sources[0]: set one of users or match`},
		{"source-no-users-or-match", `:6: sources[0]: set one of users or match`},
		{"source-match", `:8: sources[0].match: must be attendees or organizer (got "atendees")`},
		{"source-domains", `:9: sources[0].domains: only used with match`},
		{"source-include", ":9: sources[0].include.summary: invalid regular expression: missing closing ): `(zoom`"},
		{"source-exclude", ":10: sources[0].exclude.location: invalid regular expression: missing closing ]: `[a-`"},
		{"source-timezone", `:9: sources[0].timezone: unknown time zone "America/Atlantis" (want an IANA name such as Europe/Berlin)`},
		{"source-poll-interval", `:9: sources[0].poll_interval: must be at least 1s (got 500ms)`},
		{"source-presence", `:9: sources[0].activity: availability/activity Busy/Presenting is not allowed by Graph (allowed: Available/Available, Busy/InACall, Busy/InAConferenceCall, Away/Away, DoNotDisturb/Presenting)`},
		{"source-lead", ":9: sources[0].lead: must not be negative (got -1m0s)\nFILE:10: sources[0].grace: must not be negative (got -30s)"},
		{"source-header", `:9: sources[0].headers: invalid header name "Bad Header"`},

		// Files run needs (CheckFiles).
		{"files-certificate-missing", ": graph.certificate_file: open testdata/does-not-exist.pem: no such file or directory"},
		{"files-certificate-no-key", `: graph.certificate_file: testdata/client-cert-only.pem: no private key (want a PEM "PRIVATE KEY" or "RSA PRIVATE KEY" block beside the certificate)`},
		{"files-certificate-ec", ": graph.certificate_file: testdata/client-ec.pem: a *ecdsa.PrivateKey; Entra client certificates need an RSA key"},
		{"files-certificate-other-key", ": graph.certificate_file: testdata/client-other-key.pem: the private key matches none of the certificates"},
		{"files-certificate-password", ": graph.certificate_file: testdata/client.pem is PEM, but certificate_password is set: azidentity reads a password-protected certificate as PKCS#12 (.pfx) only; use an unencrypted PEM without the password, or the .pfx"},
		{"files-ca", `: graph.ca_file: testdata/valid-minimal.yaml: no PEM certificate found (want one or more "CERTIFICATE" blocks)`},
		{"files-schedule-ca", `: schedule.ca_file: testdata/valid-minimal.yaml: no PEM certificate found (want one or more "CERTIFICATE" blocks)`},
		{"files-token-file", ": graph.token_file: open testdata/does-not-exist: no such file or directory"},
		{"files-admin-token", ": server.admin_token_file: open testdata/does-not-exist: no such file or directory"},
		{"files-admin-token-empty", ": server.admin_token_file: testdata/empty-token is empty"},
		{"files-selfservice-cookie-key", ": selfservice.cookie_key_file: open testdata/does-not-exist: no such file or directory"},
		{"files-selfservice-cookie-key-short", ": selfservice.cookie_key_file: testdata/short-cookie-key holds 9 bytes; want at least 32 random bytes (head -c 32 /dev/urandom > testdata/short-cookie-key)"},

		// Every problem at once, in file order.
		{"many", ":6: graph.cloud: must be one of public, usgov, usgov-dod, china (got \"moon\")\n" +
			"FILE:8: presence.activity: availability/activity Busy/Presenting is not allowed by Graph (allowed: Available/Available, Busy/InACall, Busy/InAConferenceCall, Away/Away, DoNotDisturb/Presenting)\n" +
			"FILE:10: schedule.horizon: must be positive (got -1h0m0s)\n" +
			"FILE:12: server.listen: must be host:port such as \":8080\" or \"127.0.0.1:8080\" (got \"localhost\")\n" +
			"FILE:14: users[0].user: required\n" +
			"FILE:16: sources[0].name: must be lower-case letters, digits and - (got \"Zoom\")\n" +
			"FILE:16: sources[0]: set one of users or match\n" +
			"FILE:17: sources[0].url: must be http(s) or file (got \"gopher://example.com/feed.ics\")\n" +
			"FILE:22: sources[1].match: must be attendees or organizer (got \"organiser\")"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			file := "testdata/invalid-" + tt.file + ".yaml"
			seen[file] = true
			want := file + strings.ReplaceAll(tt.want, "FILE", file)
			c, err := loadWith(t, file, env(nil))
			if strings.HasPrefix(tt.file, "files-") {
				if err != nil {
					t.Fatalf("Load(%s) = %v; want nil (CheckFiles finds the problem)", file, err)
				}
				err = c.CheckFiles()
			}
			if err == nil {
				t.Fatalf("Load(%s) = nil error; want\n%s", file, want)
			}
			if got := err.Error(); got != want {
				t.Errorf("Load(%s) error =\n%s\nwant\n%s", file, got, want)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("Load(%s) error is %T; want *ValidationError", file, err)
			}
		})
	}
	// Every testdata/invalid-*.yaml is in the table.
	files, _ := filepath.Glob("testdata/invalid-*.yaml")
	for _, f := range files {
		if !seen[f] {
			t.Errorf("%s has no test case", f)
		}
	}
}

func reflectValue(c *Config) reflect.Value { return reflect.ValueOf(c).Elem() }

func TestRelativeFileURL(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/my config/c.yaml"
	yaml := "graph: {dry_run: true}\nsources:\n  - {name: a, url: \"file:feeds/a b.ics\", users: [x@example.com]}\n  - {name: b, url: \"file:///abs/b.ics\", users: [x@example.com]}\n"
	c, err := Parse([]byte(yaml), path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Sources[0].URL, "file://"+dir+"/my%20config/feeds/a%20b.ics"; got != want {
		t.Errorf("relative file URL = %q; want %q", got, want)
	}
	if got, want := c.Sources[1].URL, "file:///abs/b.ics"; got != want {
		t.Errorf("absolute file URL = %q; want %q", got, want)
	}
}

// TestCheckFilesValid: a configuration with every file in place passes.
func TestCheckFilesValid(t *testing.T) {
	c, err := Load("testdata/valid-files.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckFiles(); err != nil {
		t.Errorf("CheckFiles() = %v; want nil", err)
	}
}

// TestSelfserviceAuth: people sign in with the application's secret or
// certificate; the identities that have neither are refused.
func TestSelfserviceAuth(t *testing.T) {
	for _, tt := range []struct {
		auth string
		ok   bool
	}{
		{AuthClientSecret, true},
		{AuthClientCertificate, true},
		{AuthWorkloadIdentity, false},
		{AuthManagedIdentity, false},
		{AuthDefault, false},
	} {
		t.Run(tt.auth, func(t *testing.T) {
			c, err := Load("testdata/valid-minimal.yaml")
			if err != nil {
				t.Fatal(err)
			}
			c.Graph.Auth, c.Graph.ClientSecret, c.Graph.ClientSecretFile = tt.auth, "", ""
			switch tt.auth {
			case AuthClientSecret:
				c.Graph.ClientSecret = "s3cret"
			case AuthClientCertificate:
				c.Graph.CertificateFile = "testdata/client.pem"
			}
			c.Selfservice.URL, c.Selfservice.CookieKeyFile = "https://presence.contoso.com", "testdata/cookie-key"
			err = c.Validate()
			if tt.ok && err != nil {
				t.Errorf("Validate() with auth %s and selfservice = %v; want nil", tt.auth, err)
			}
			want := "selfservice: sign-in needs graph.auth client_secret or client_certificate (auth is " + tt.auth + ")"
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), want)) {
				t.Errorf("Validate() with auth %s and selfservice = %v; want %q", tt.auth, err, want)
			}
		})
	}
}

// TestCheckFilesDryRun: a dry run opens no state and calls no Graph, so
// only the admin token file counts.
func TestCheckFilesDryRun(t *testing.T) {
	c, err := Load("testdata/invalid-files-certificate-missing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Graph.DryRun = true
	c.State.Path = "testdata/ca.pem/state.db"
	if err := c.CheckFiles(); err != nil {
		t.Errorf("CheckFiles() in dry run = %v; want nil", err)
	}
	c.Server.AdminTokenFile = "testdata/empty-token"
	if err := c.CheckFiles(); err == nil || !strings.Contains(err.Error(), "server.admin_token_file: testdata/empty-token is empty") {
		t.Errorf("CheckFiles() in dry run with an empty admin token = %v; want it named", err)
	}
}

// TestCheckFilesWorkloadIdentityEnv: without token_file, the file
// AZURE_FEDERATED_TOKEN_FILE names is checked, and one of them is needed.
func TestCheckFilesWorkloadIdentityEnv(t *testing.T) {
	c, err := Load("testdata/invalid-files-token-file.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Graph.TokenFile = ""
	c.State.Path = filepath.Join(t.TempDir(), "state.db")
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", "")
	if err := c.CheckFiles(); err == nil || !strings.Contains(err.Error(), "graph.token_file: required with auth workload_identity when AZURE_FEDERATED_TOKEN_FILE is not set") {
		t.Errorf("CheckFiles() with no token file = %v; want it required", err)
	}
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", "testdata/empty-token")
	if err := c.CheckFiles(); err == nil || !strings.Contains(err.Error(), "graph.token_file: testdata/empty-token is empty") {
		t.Errorf("CheckFiles() with an empty federated token = %v; want it named", err)
	}
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", "testdata/admin-token")
	if err := c.CheckFiles(); err != nil {
		t.Errorf("CheckFiles() with a federated token = %v; want nil", err)
	}
}

// TestFetcherFallbacksAreTheDefaults: sources cannot read Default (config
// imports sources), so its Fetcher keeps fallbacks of its own for a zero
// Timeout or MaxBytes; they must be Default's values, not a second set.
func TestFetcherFallbacksAreTheDefaults(t *testing.T) {
	s := Default().Schedule
	if s.FetchTimeout != sources.DefaultFetchTimeout || s.MaxFeedBytes != sources.DefaultMaxFeedBytes {
		t.Errorf("Default: fetch_timeout %v, max_feed_bytes %d; sources' fallbacks: %v, %d; want the same",
			s.FetchTimeout, s.MaxFeedBytes, sources.DefaultFetchTimeout, sources.DefaultMaxFeedBytes)
	}
}

func TestUserLocations(t *testing.T) {
	c := &Config{Users: []User{
		{Email: "alice@partner.example", User: "alice@contoso.com", Timezone: "Europe/Berlin"},
		{Email: "alice@other.example", User: "alice@contoso.com", Timezone: "America/New_York"}, // the first wins
		{Email: "bob@partner.example", User: "bob@contoso.com", Timezone: "Eastern Standard Time"},
		{Email: "carol@partner.example", User: "carol@contoso.com"},
	}}
	got := map[string]string{}
	for u, loc := range c.UserLocations() {
		got[u] = loc.String()
	}
	want := map[string]string{"alice@contoso.com": "Europe/Berlin", "bob@contoso.com": "America/New_York"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UserLocations() mismatch (-want +got):\n%s", diff)
	}
}
