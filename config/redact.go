package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"strings"

	"go.yaml.in/yaml/v3"
)

const redacted = "<redacted>"

// RedactURL returns s fit for logs, errors, metrics and the status page.
// Feed URLs carry secrets (Zoom and Google feed tokens), so it hides the
// userinfo, every query value (keys stay, to tell feeds apart) and the
// fragment:
//
//	https://user:pw@example.zoom.us/feed.ics?token=abc&x=1
//	→ https://<redacted>@example.zoom.us/feed.ics?token=<redacted>&x=<redacted>
//
// In http(s) URLs it also hides path segments that look like tokens (24 or
// more letters, digits, "-" and "_", with at least four of each of letters and
// digits), which is where Google's "private-…" and Outlook's publishing links
// keep theirs. A string that does not parse as a URL is cut at its first "?"
// or "#" and its userinfo is hidden.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return redactRaw(s)
	}
	var b strings.Builder
	if u.Scheme != "" {
		b.WriteString(u.Scheme)
		b.WriteByte(':')
	}
	if u.Opaque != "" {
		b.WriteString(u.Opaque)
	} else {
		// The same rule as (*url.URL).String.
		if (u.Scheme != "" || u.Host != "" || u.User != nil) &&
			!(u.OmitHost && u.Host == "" && u.User == nil) &&
			(u.Host != "" || u.Path != "" || u.User != nil) {
			b.WriteString("//")
		}
		if u.User != nil {
			b.WriteString(redacted + "@")
		}
		b.WriteString(u.Host)
		path := u.EscapedPath()
		if s := strings.ToLower(u.Scheme); s == "http" || s == "https" {
			segs := strings.Split(path, "/")
			for i, seg := range segs {
				if looksLikeToken(seg) {
					segs[i] = redacted
				}
			}
			path = strings.Join(segs, "/")
		}
		b.WriteString(path)
	}
	if u.RawQuery != "" {
		b.WriteByte('?')
		for i, kv := range strings.Split(u.RawQuery, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			if k, _, ok := strings.Cut(kv, "="); ok {
				b.WriteString(k)
				b.WriteByte('=')
			}
			b.WriteString(redacted)
		}
	}
	if u.Fragment != "" {
		b.WriteString("#" + redacted)
	}
	return b.String()
}

func redactRaw(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + string(s[i]) + redacted
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
			s = s[:i+3] + redacted + rest[at:]
		}
	}
	return s
}

func looksLikeToken(seg string) bool {
	if len(seg) < 24 {
		return false
	}
	letters, digits := 0, 0
	for _, r := range seg {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
			letters++
		case '0' <= r && r <= '9':
			digits++
		case r == '-' || r == '_':
		default:
			return false
		}
	}
	return letters >= 4 && digits >= 4
}

// sourceFields is Source without its methods, for marshalling the redacted
// copy without recursing into Source.MarshalYAML.
type sourceFields Source

// redacted returns a copy of s with the URL redacted and every header value
// hidden (headers exist to carry credentials).
func (s Source) redacted() Source {
	s.URL = RedactURL(s.URL)
	if s.Headers != nil {
		h := make(map[string]string, len(s.Headers))
		for k := range s.Headers {
			h[k] = redacted
		}
		s.Headers = h
	}
	return s
}

// String names the source and its redacted URL, for logs.
func (s Source) String() string {
	return fmt.Sprintf("%s (%s)", s.Name, RedactURL(s.URL))
}

// GoString keeps %#v from printing the URL or header values.
func (s Source) GoString() string {
	return strings.Replace(fmt.Sprintf("%#v", sourceFields(s.redacted())), "config.sourceFields", "config.Source", 1)
}

// MarshalYAML writes the source with its URL and header values redacted.
func (s Source) MarshalYAML() (any, error) { return sourceFields(s.redacted()), nil }

// MarshalJSON writes the source with its URL and header values redacted.
func (s Source) MarshalJSON() ([]byte, error) { return json.Marshal(sourceFields(s.redacted())) }

// Redacted returns a copy of c that is safe to show: secrets read
// "<secret>", source URLs are redacted (RedactURL) and header values read
// "<redacted>". c is not modified.
func (c *Config) Redacted() *Config {
	r := *c
	for _, s := range []*Secret{&r.Graph.ClientSecret, &r.Graph.CertificatePassword} {
		if *s != "" {
			*s = "<secret>"
		}
	}
	r.Users = append([]User(nil), c.Users...)
	r.Sources = make([]Source, len(c.Sources))
	for i, s := range c.Sources {
		s = s.redacted()
		s.Users = append([]string(nil), s.Users...)
		s.Domains = append([]string(nil), s.Domains...)
		s.Headers = maps.Clone(s.Headers)
		r.Sources[i] = s
	}
	if c.Sources == nil {
		r.Sources = nil
	}
	return &r
}

// String returns c as YAML with secrets, source URLs and header values
// hidden (see Redacted), so that %v of a *Config is safe to log.
func (c *Config) String() string {
	out, err := yaml.Marshal(c.Redacted())
	if err != nil {
		return fmt.Sprintf("<config: %v>", err)
	}
	return string(out)
}
