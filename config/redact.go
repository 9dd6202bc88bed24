package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/calpresence/calpresence/sources"
)

const redacted = "<redacted>"

// RedactURL returns s fit for logs, errors, metrics and the status page;
// it is sources.RedactURL, the one place that knows where feed URLs keep
// their secrets.
func RedactURL(s string) string { return sources.RedactURL(s) }

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
// "<secret>", the state DSN's password "xxxxx" (RedactDSN), source URLs are
// redacted (RedactURL) and header values read "<redacted>". c is not
// modified.
func (c *Config) Redacted() *Config {
	r := *c
	for _, s := range []*Secret{&r.Graph.ClientSecret, &r.Graph.CertificatePassword} {
		if *s != "" {
			*s = "<secret>"
		}
	}
	r.State.DSN = DSN(RedactDSN(string(c.State.DSN)))
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
