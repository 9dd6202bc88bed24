package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/sources/ical"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	Path string // YAML path, e.g. "sources[1].url"; "" for the document
	Line int    // line in the file; 0 when unknown
	Msg  string
}

// ValidationError lists every problem found in a configuration, in file
// order. Load and Parse return it for syntax, decoding and validation
// problems alike, so a caller can tell a bad config (exit status 2) from
// other failures with errors.As.
type ValidationError struct {
	File     string // the configuration file, as given to Load or Parse
	Problems []Problem
}

// Error returns one problem per line:
//
//	config.yaml:12: sources[1].url: must be http(s) or file (got "ftp://host/feed.ics?<redacted>")
func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File != "" {
			b.WriteString(e.File)
			if p.Line > 0 {
				fmt.Fprintf(&b, ":%d", p.Line)
			}
			b.WriteString(": ")
		} else if p.Line > 0 {
			fmt.Fprintf(&b, "line %d: ", p.Line)
		}
		if p.Path != "" {
			b.WriteString(p.Path)
			b.WriteString(": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// newValidationError sorts problems by line, problems without a line last.
func newValidationError(file string, problems []Problem) *ValidationError {
	slices.SortStableFunc(problems, func(a, b Problem) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
	return &ValidationError{File: file, Problems: problems}
}

// Validate checks c and returns a *ValidationError listing every problem, or
// nil. Load and Parse call it; call it again after changing a Config in code.
//
// Decisions worth knowing:
//   - In dry_run no Graph call is made, so no credential is required
//     (tenant_id, client_id, secrets may be empty); whatever is given must
//     still be consistent.
//   - server.listen "" disables the HTTP server (no health, metrics or admin
//     actions); otherwise it must be host:port with a numeric port.
//   - A source's poll_interval of 0 means "inherit schedule.poll_interval".
//   - server.hostnames holds DNS names only: loopback names and IP literals
//     are answered anyway, so an IP literal there is an error rather than a
//     no-op, and a wildcard (*.example.com) is refused, not matched.
func (c *Config) Validate() error {
	if problems := c.validate(nil); len(problems) > 0 {
		return newValidationError(c.Path, problems)
	}
	return nil
}

// lineFor returns the line of path, or of its nearest ancestor that was in
// the file (a missing key is reported on its parent's line).
func lineFor(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

type checker struct {
	lines    map[string]int
	problems []Problem
}

func (k *checker) add(path, format string, args ...any) {
	k.problems = append(k.problems, Problem{Path: path, Line: lineFor(k.lines, path), Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate(lines map[string]int) []Problem {
	k := &checker{lines: lines}
	c.validateGraph(k)
	c.validatePresence(k)
	c.validateSchedule(k)
	c.validateState(k)
	if l := c.Server.Listen; l != "" {
		_, port, err := net.SplitHostPort(l)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			k.add("server.listen", "must be host:port such as \":8080\" or \"127.0.0.1:8080\" (got %q)", l)
		}
	}
	positive(k, "server.shutdown_timeout", c.Server.ShutdownTimeout)
	checkHostnames(k, "server.hostnames", c.Server.Hostnames)
	c.validateWebhooks(k)
	c.validateSelfservice(k)
	c.validateUsers(k)
	c.validateSources(k)
	return k.problems
}

var auths = []string{AuthClientSecret, AuthClientCertificate, AuthWorkloadIdentity, AuthManagedIdentity, AuthDefault}
var clouds = []string{CloudPublic, CloudUSGov, CloudUSGovDoD, CloudChina}

func (c *Config) validateGraph(k *checker) {
	g := c.Graph
	need := !g.DryRun // credentials are needed only to call Graph
	if need && g.TenantID == "" {
		k.add("graph.tenant_id", "required (unless dry_run)")
	}
	if need && g.ClientID == "" {
		k.add("graph.client_id", "required (unless dry_run)")
	}
	if !slices.Contains(auths, g.Auth) {
		k.add("graph.auth", "must be one of %s (got %q)", strings.Join(auths, ", "), g.Auth)
	}
	switch g.Auth {
	case AuthClientSecret:
		if g.ClientSecret != "" && g.ClientSecretFile != "" || need && g.ClientSecret == "" && g.ClientSecretFile == "" {
			k.add("graph", "set one of client_secret or client_secret_file")
		}
	case AuthClientCertificate:
		if need && g.CertificateFile == "" {
			k.add("graph.certificate_file", "required with auth client_certificate")
		}
	}
	onlyWith := func(set bool, path, auth string) {
		if set && g.Auth != auth && slices.Contains(auths, g.Auth) {
			k.add(path, "only used with auth %s (auth is %s)", auth, g.Auth)
		}
	}
	onlyWith(g.ClientSecret != "", "graph.client_secret", AuthClientSecret)
	onlyWith(g.ClientSecretFile != "", "graph.client_secret_file", AuthClientSecret)
	onlyWith(g.CertificateFile != "", "graph.certificate_file", AuthClientCertificate)
	onlyWith(g.CertificatePassword != "", "graph.certificate_password", AuthClientCertificate)
	onlyWith(g.TokenFile != "", "graph.token_file", AuthWorkloadIdentity)

	if !slices.Contains(clouds, g.Cloud) {
		k.add("graph.cloud", "must be one of %s (got %q)", strings.Join(clouds, ", "), g.Cloud)
	}
	// Graph's reference lists setPresence (v1.0) as available in the
	// global service and US Government L4 and L5 (DOD), not in the China
	// cloud operated by 21Vianet ("National cloud deployments" table of
	// https://learn.microsoft.com/graph/api/presence-setpresence). An
	// explicit endpoint says the operator knows better.
	if g.Cloud == CloudChina && g.Endpoint == "" {
		k.add("graph.cloud", "china: Microsoft Graph documents setPresence for the global service and US Government L4/L5 only, "+
			"not for the service operated by 21Vianet; set graph.endpoint explicitly to try it anyway")
	}
	for _, e := range []struct{ path, v string }{
		{"graph.endpoint", g.Endpoint}, {"graph.authority_host", g.AuthorityHost},
	} {
		path, v := e.path, e.v
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || u.Scheme != "https" || u.Host == "" {
			k.add(path, "must be an https URL (got %q)", RedactURL(v))
		}
	}
	if g.MaxConcurrency < 1 {
		k.add("graph.max_concurrency", "must be at least 1 (got %d)", g.MaxConcurrency)
	}
	positive(k, "graph.timeout", g.Timeout)
	if g.RateLimit < 1 {
		k.add("graph.rate_limit", "must be at least 1 (got %d)", g.RateLimit)
	}
	positive(k, "graph.rate_window", g.RateWindow)
	if g.ReadbackInterval != 0 && g.ReadbackInterval < MinReadbackInterval {
		k.add("graph.readback_interval", "must be 0 (off) or at least %s (got %s)", MinReadbackInterval, g.ReadbackInterval)
	}
}

// MinReadbackInterval is the shortest graph.readback_interval: each
// read-back of 10,000 people is 16 calls of Graph's 1,500 reads per 30 s.
const MinReadbackInterval = time.Second

func positive(k *checker, path string, d time.Duration) {
	if d <= 0 {
		k.add(path, "must be positive (got %s)", d)
	}
}

func notNegative(k *checker, path string, d time.Duration) {
	if d < 0 {
		k.add(path, "must not be negative (got %s)", d)
	}
}

func checkPair(k *checker, path, availability, activity string) {
	if presence.Allowed(availability, activity) {
		return
	}
	var allowed []string
	for _, p := range presence.AllowedPairs {
		allowed = append(allowed, p.Availability+"/"+p.Activity)
	}
	k.add(path, "availability/activity %s/%s is not allowed by Graph (allowed: %s)",
		availability, activity, strings.Join(allowed, ", "))
}

func (c *Config) validatePresence(k *checker) {
	p := c.Presence
	checkPair(k, "presence.activity", p.Availability, p.Activity)
	notNegative(k, "presence.lead", p.Lead)
	notNegative(k, "presence.grace", p.Grace)
	notNegative(k, "presence.merge_gap", p.MergeGap)
	notNegative(k, "presence.lead_burst", p.LeadBurst)
	// Graph accepts an expirationDuration from PT5M to PT4H.
	if p.MaxLease < presence.MinLease || p.MaxLease > presence.MaxLease {
		k.add("presence.max_lease", "must be between 5m and 4h (got %s)", p.MaxLease)
	}
	for _, f := range StatusMessageFields(p.StatusMessage) {
		if !slices.Contains(StatusMessagePlaceholders, f) {
			k.add("presence.status_message", "unknown placeholder %s (known: %s)", f, strings.Join(StatusMessagePlaceholders, ", "))
		}
	}
	// Graph: a status message is at most 280 characters.
	if n := len([]rune(p.StatusMessage)); n > 200 {
		k.add("presence.status_message", "at most 200 characters (got %d): Teams shows 280 at most, and the title fills in", n)
	}
}

func (c *Config) validateSchedule(k *checker) {
	s := c.Schedule
	if s.PollInterval < time.Second {
		k.add("schedule.poll_interval", "must be at least 1s (got %s)", s.PollInterval)
	}
	positive(k, "schedule.horizon", s.Horizon)
	checkZone(k, "schedule.timezone", s.Timezone)
	positive(k, "schedule.fetch_timeout", s.FetchTimeout)
	if s.MaxFeedBytes < 1 {
		k.add("schedule.max_feed_bytes", "must be at least 1 (got %d)", s.MaxFeedBytes)
	}
	if s.MaxOccurrences < 1 {
		k.add("schedule.max_occurrences", "must be at least 1 (got %d)", s.MaxOccurrences)
	}
	// Entra answers a lookup in ~100 ms; more often than every minute
	// would only spend the tenant's directory quota.
	if s.IdentityRefresh < time.Minute {
		k.add("schedule.identity_refresh", "must be at least 1m (got %s)", s.IdentityRefresh)
	}
	for _, n := range []struct {
		path string
		v    int
	}{
		{"schedule.fetch_concurrency", s.FetchConcurrency},
		{"schedule.max_feed_events", s.MaxFeedEvents},
		{"schedule.max_feed_occurrences", s.MaxFeedOccurrences},
		{"schedule.max_feed_people", s.MaxFeedPeople},
	} {
		if n.v < 1 {
			k.add(n.path, "must be at least 1 (got %d)", n.v)
		}
	}
	if s.MaxCopyAge < time.Minute {
		k.add("schedule.max_copy_age", "must be at least 1m (got %s)", s.MaxCopyAge)
	}
}

func checkZone(k *checker, path, name string) {
	if name == "" {
		return
	}
	if _, err := time.LoadLocation(name); err != nil {
		k.add(path, "unknown time zone %q (want an IANA name such as Europe/Berlin)", name)
	}
}

func (c *Config) validateUsers(k *checker) {
	seen := map[string]int{}
	for i, u := range c.Users {
		path := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Email == "":
			k.add(path+".email", "required")
		case !strings.Contains(u.Email, "@"):
			k.add(path+".email", "must be an email address (got %q)", u.Email)
		default:
			key := NormalizeAddress(u.Email)
			if j, ok := seen[key]; ok {
				k.add(path+".email", "duplicate email %q (also users[%d])", u.Email, j)
			} else {
				seen[key] = i
			}
		}
		if u.User == "" {
			k.add(path+".user", "required")
		}
		if u.Timezone != "" {
			if _, err := ical.LoadZone(u.Timezone); err != nil {
				k.add(path+".timezone", "unknown time zone %q (want an IANA name such as Europe/Berlin or a Windows zone such as W. Europe Standard Time)", u.Timezone)
			}
		}
	}
}

var sourceNameRE = regexp.MustCompile(`^[a-z0-9-]+$`)

func (c *Config) validateSources(k *checker) {
	if len(c.Sources) == 0 {
		k.add("sources", "at least one source is required")
	}
	names := map[string]int{}
	for i, s := range c.Sources {
		path := fmt.Sprintf("sources[%d]", i)
		switch {
		case s.Name == "":
			k.add(path+".name", "required")
		case !sourceNameRE.MatchString(s.Name):
			k.add(path+".name", "must be lower-case letters, digits and - (got %q)", s.Name)
		default:
			if j, ok := names[s.Name]; ok {
				k.add(path+".name", "duplicate name %q (also sources[%d])", s.Name, j)
			} else {
				names[s.Name] = i
			}
		}
		checkSourceURL(k, path+".url", s.URL)
		if s.PollInterval != 0 && s.PollInterval < time.Second {
			k.add(path+".poll_interval", "must be at least 1s (got %s)", s.PollInterval)
		}
		checkHeaders(k, path+".headers", s.Headers)

		if (len(s.Users) > 0) == (s.Match != "") {
			k.add(path, "set one of users or match")
		}
		for j, u := range s.Users {
			if strings.TrimSpace(u) == "" {
				k.add(fmt.Sprintf("%s.users[%d]", path, j), "must not be empty")
			}
		}
		if s.Match != "" && s.Match != MatchAttendees && s.Match != MatchOrganizer {
			k.add(path+".match", "must be attendees or organizer (got %q)", s.Match)
		}
		if len(s.Domains) > 0 && s.Match == "" {
			k.add(path+".domains", "only used with match")
		}
		for j, d := range s.Domains {
			if strings.TrimSpace(d) == "" || strings.Contains(d, "@") {
				k.add(fmt.Sprintf("%s.domains[%d]", path, j), "must be a domain such as contoso.com (got %q)", d)
			}
		}
		checkFilter(k, path+".include", s.Include)
		checkFilter(k, path+".exclude", s.Exclude)
		checkZone(k, path+".timezone", s.Timezone)

		if s.Availability != "" || s.Activity != "" {
			p := c.Presence.For(s)
			at := path + ".activity"
			if s.Activity == "" {
				at = path + ".availability"
			}
			checkPair(k, at, p.Availability, p.Activity)
		}
		if s.Lead != nil {
			notNegative(k, path+".lead", *s.Lead)
		}
		if s.Grace != nil {
			notNegative(k, path+".grace", *s.Grace)
		}
	}
}

func checkSourceURL(k *checker, path, raw string) {
	if raw == "" {
		k.add(path, "required")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		k.add(path, "invalid URL (got %q)", RedactURL(raw))
		return
	}
	switch strings.ToLower(u.Scheme) {
	case "https", "http":
		if u.Host == "" {
			k.add(path, "missing host (got %q)", RedactURL(raw))
		}
	case "file":
		if u.Path == "" && u.Opaque == "" {
			k.add(path, "missing file path (got %q)", RedactURL(raw))
		}
	default:
		k.add(path, "must be http(s) or file (got %q)", RedactURL(raw))
	}
}

func checkHeaders(k *checker, path string, h map[string]string) {
	for _, name := range slices.Sorted(maps.Keys(h)) {
		if !validHeaderName(name) {
			k.add(path, "invalid header name %q", name)
		}
		// The value is not quoted: it is usually a credential.
		if strings.ContainsAny(h[name], "\r\n\x00") {
			k.add(path+"."+name, "value must not contain line breaks")
		}
	}
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r >= 0x80 || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) || r == 0x7f {
			return false
		}
	}
	return true
}

func checkFilter(k *checker, path string, f Filter) {
	for _, fe := range []struct{ key, re string }{
		{"summary", f.Summary}, {"location", f.Location}, {"description", f.Description},
	} {
		if fe.re == "" {
			continue
		}
		if _, err := regexp.Compile(fe.re); err != nil {
			msg := err.Error()
			if se, ok := err.(*syntax.Error); ok {
				msg = fmt.Sprintf("%s: `%s`", se.Code, se.Expr)
			}
			k.add(path+"."+fe.key, "invalid regular expression: %s", msg)
		}
	}
}

// checkHostnames checks server.hostnames: each a DNS name (no scheme, port,
// path or wildcard), none an IP literal, none twice. Names compare as the
// server matches them: case-insensitively, a trailing dot ignored.
func checkHostnames(k *checker, path string, names []string) {
	seen := map[string]int{}
	for i, name := range names {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case strings.Contains(name, "*"):
			k.add(p, "wildcards are not supported; list each name (got %q)", name)
			continue
		case isIPLiteral(name):
			k.add(p, "IP literals are answered without being listed; list names only (got %q)", name)
			continue
		case !isDNSName(name):
			k.add(p, "must be a DNS name such as calpresence.internal, without scheme, port or path (got %q)", name)
			continue
		}
		key := strings.ToLower(strings.TrimSuffix(name, "."))
		if j, dup := seen[key]; dup {
			k.add(p, "duplicate name %q (also %s[%d])", name, path, j)
			continue
		}
		seen[key] = i
	}
}

// isIPLiteral reports whether s is an IP address, IPv6 in brackets or not.
func isIPLiteral(s string) bool {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	return net.ParseIP(s) != nil
}

// isDNSName reports whether s is a host name as DNS spells it (RFC 1123
// section 2.1): dot-separated labels of 1 to 63 letters, digits and
// hyphens, neither starting nor ending with a hyphen, 253 characters at
// most, and a last label that is not all digits (RFC 3696 section 2), so
// that no name reads as an address. One trailing dot is allowed.
func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}
