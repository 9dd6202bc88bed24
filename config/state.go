package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Values of state.driver.
const (
	DriverBbolt    = "bbolt"    // one replica, the state in the file at state.path
	DriverPostgres = "postgres" // any number of replicas sharing the database at state.dsn
)

var drivers = []string{DriverBbolt, DriverPostgres}

// DSN is a PostgreSQL connection string, as a URL
// (postgres://user:password@host:5432/db?sslmode=verify-full) or as
// keyword/value pairs (host=db user=calpresence password=…). It prints
// with its passwords redacted (RedactDSN) wherever a Config is shown.
type DSN string

// String returns the DSN with its passwords redacted.
func (d DSN) String() string { return RedactDSN(string(d)) }

// GoString keeps %#v from printing the password.
func (d DSN) GoString() string { return fmt.Sprintf("%q", d.String()) }

// MarshalYAML writes the DSN with its passwords redacted.
func (d DSN) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the DSN with its passwords redacted.
func (d DSN) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// dsnMask replaces a password: Go's url.URL.Redacted and pgx's own
// messages use it too, and a redacted DSN still parses.
const dsnMask = "xxxxx"

// RedactDSN returns dsn fit for logs and errors: the password of a URL's
// userinfo and the value of every password or sslpassword parameter (in
// the URL's query or as keyword/value) read "xxxxx". A URL that does not
// parse loses its whole userinfo and query instead; a keyword/value string
// whose quoting does not close loses everything after "password".
func RedactDSN(dsn string) string {
	r, _ := redactDSN(dsn)
	return r
}

// redactDSN returns the redacted DSN and the secrets it hid, as written
// (and, for URLs, as decoded).
func redactDSN(dsn string) (string, []string) {
	lower := strings.ToLower(dsn)
	if strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		return redactDSNURL(dsn)
	}
	return redactDSNKeywords(dsn)
}

func isPasswordKey(key string) bool {
	return strings.EqualFold(key, "password") || strings.EqualFold(key, "sslpassword")
}

func redactDSNURL(dsn string) (string, []string) {
	var secrets []string
	u, err := url.Parse(dsn)
	if err != nil {
		// The parts' boundaries are uncertain: hide the userinfo (up to
		// the last "@") and the whole query.
		scheme, rest, _ := strings.Cut(dsn, "://")
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			secrets = append(secrets, rest[:i])
			rest = dsnMask + rest[i:]
		}
		if before, q, ok := strings.Cut(rest, "?"); ok {
			secrets = append(secrets, q)
			rest = before + "?" + dsnMask
		}
		return scheme + "://" + rest, secrets
	}
	if p, ok := u.User.Password(); ok {
		secrets = append(secrets, p)
		u.User = url.UserPassword(u.User.Username(), dsnMask)
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, part := range parts {
			k, v, _ := strings.Cut(part, "=")
			key, err := url.QueryUnescape(k)
			if err != nil {
				key = k
			}
			if isPasswordKey(key) {
				secrets = append(secrets, v)
				if dv, err := url.QueryUnescape(v); err == nil {
					secrets = append(secrets, dv)
				}
				parts[i] = k + "=" + dsnMask
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	return u.String(), secrets
}

func isDSNSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// redactDSNKeywords reads keyword/value pairs the way pgx does (values
// single-quoted or not, backslash escapes) and masks the passwords'.
func redactDSNKeywords(s string) (string, []string) {
	var (
		b       strings.Builder
		secrets []string
	)
	i := 0
	for i < len(s) {
		j := i
		for j < len(s) && isDSNSpace(s[j]) {
			j++
		}
		b.WriteString(s[i:j])
		i = j
		if i == len(s) {
			break
		}
		// A word that is not key=value is no setting: it may be a
		// password pasted where the DSN goes. It is hidden.
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			secrets = append(secrets, strings.TrimSpace(s[i:]))
			b.WriteString(dsnMask)
			break
		}
		words := strings.Fields(s[i : i+eq])
		key := ""
		if len(words) > 0 {
			key = words[len(words)-1]
		}
		if len(words) > 1 {
			secrets = append(secrets, words[:len(words)-1]...)
			b.WriteString(dsnMask + " " + key + "=")
		} else {
			b.WriteString(s[i : i+eq+1])
		}
		i += eq + 1
		for j = i; j < len(s) && isDSNSpace(s[j]); j++ {
		}
		b.WriteString(s[i:j])
		i = j
		start := i
		closed := true
		if i < len(s) && s[i] == '\'' {
			closed = false
			for i++; i < len(s); i++ {
				if s[i] == '\\' {
					i++
					continue
				}
				if s[i] == '\'' {
					i++
					closed = true
					break
				}
			}
		} else {
			for ; i < len(s) && !isDSNSpace(s[i]); i++ {
				if s[i] == '\\' {
					i++
				}
			}
		}
		i = min(i, len(s))
		val := s[start:i]
		if !closed && strings.Contains(strings.ToLower(s[:start]), "password") {
			// An open quote swallows the rest: hide it all.
			secrets = append(secrets, val)
			b.WriteString(dsnMask)
			break
		}
		if isPasswordKey(key) {
			secrets = append(secrets, val, strings.Trim(val, "'"))
			b.WriteString(dsnMask)
			continue
		}
		b.WriteString(val)
	}
	return b.String(), secrets
}

// checkDSN returns what is wrong with dsn for pgx, or "". The message
// quotes the DSN redacted, and pgx's reason only when it shows no part of
// a password (pgx's own redaction of its messages is best effort).
func checkDSN(dsn string) string {
	_, err := pgxpool.ParseConfig(dsn)
	if err == nil {
		return ""
	}
	redacted, secrets := redactDSN(dsn)
	reason := "pgx cannot parse it"
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		// Its text without the connection string: "cannot parse ``: why".
		bare := *pe
		bare.ConnString = ""
		why := strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
		// A *url.Error quotes the whole URL: keep only its reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			why = strings.ReplaceAll(why, ue.Error(), ue.Err.Error())
		}
		reason += ": " + why
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(reason, s) {
			reason = "pgx cannot parse it (its reason is not shown: it quotes the password)"
			break
		}
	}
	return fmt.Sprintf("%s (got %q)", reason, redacted)
}

// loadState applies what state.driver implies at load: with postgres,
// state.path (bbolt's) must not be in the file and is cleared, and
// state.dsn_file is read (and trimmed) into state.dsn, as
// graph.client_secret_file is. present reports whether a YAML path was in
// the file.
func (c *Config) loadState(present func(path string) bool) []Problem {
	s := &c.State
	if s.Driver != DriverPostgres {
		return nil
	}
	var problems []Problem
	if present("state.path") {
		problems = append(problems, Problem{Path: "state.path", Msg: "only used with driver bbolt (driver is postgres)"})
	}
	s.Path = ""
	if s.DSNFile == "" || s.DSN != "" {
		return problems // none to read, or both set: Validate says so
	}
	data, err := os.ReadFile(s.DSNFile)
	if err != nil {
		return append(problems, Problem{Path: "state.dsn_file", Msg: err.Error()})
	}
	dsn := strings.TrimSpace(string(data))
	if dsn == "" {
		return append(problems, Problem{Path: "state.dsn_file", Msg: fmt.Sprintf("%s is empty", s.DSNFile)})
	}
	if msg := checkDSN(dsn); msg != "" {
		return append(problems, Problem{Path: "state.dsn_file", Msg: fmt.Sprintf("%s: %s", s.DSNFile, msg)})
	}
	s.DSN, s.DSNFile = DSN(dsn), ""
	return problems
}

func (c *Config) validateState(k *checker) {
	s := c.State
	switch s.Driver {
	case DriverBbolt:
		if s.Path == "" {
			k.add("state.path", "required")
		}
		if s.DSN != "" {
			k.add("state.dsn", "only used with driver postgres (driver is bbolt)")
		}
		if s.DSNFile != "" {
			k.add("state.dsn_file", "only used with driver postgres (driver is bbolt)")
		}
	case DriverPostgres:
		if (s.DSN == "") == (s.DSNFile == "") {
			k.add("state", "set one of dsn or dsn_file (driver postgres)")
		}
		if s.DSN != "" {
			if msg := checkDSN(string(s.DSN)); msg != "" {
				k.add("state.dsn", "%s", msg)
			}
		}
	default:
		k.add("state.driver", "must be one of %s (got %q)", strings.Join(drivers, ", "), s.Driver)
	}
}
