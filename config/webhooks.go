package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Webhooks configures the live meeting signals (docs/webhooks.md): Zoom and Webex webhooks received on a listener of their own,
// the one exposed through the ingress. Absent: off.
type Webhooks struct {
	// Listen is the webhook listener's address (default ":8081"); it
	// serves POST /webhooks/zoom and /webhooks/webex only.
	Listen string        `yaml:"listen"`
	Zoom   *ZoomWebhook  `yaml:"zoom,omitempty"`
	Webex  *WebexWebhook `yaml:"webex,omitempty"`
	// MaxUnscheduled caps an unscheduled call (joined with no calendar
	// event), so that a lost "left" cannot keep anyone Busy for ever
	// (default 8h).
	MaxUnscheduled time.Duration `yaml:"max_unscheduled,omitempty"`
}

// ZoomWebhook is the Zoom app's webhook secret token (Zoom Marketplace,
// Features → Access → Secret Token): it signs every event.
type ZoomWebhook struct {
	SecretToken     Secret `yaml:"secret_token,omitempty"`
	SecretTokenFile string `yaml:"secret_token_file,omitempty"`
}

// WebexWebhook is the secret given when the Webex webhooks were
// registered: it signs every event (X-Spark-Signature).
type WebexWebhook struct {
	Secret     Secret `yaml:"secret,omitempty"`
	SecretFile string `yaml:"secret_file,omitempty"`
	// AccessTokenFile holds a Webex access token with spark:people_read
	// (or spark-admin:people_read): Webex Calling's events name the person
	// by id, looked up once with GET {api}/people/{personId}. Read at each
	// look-up, so that a token renewed in the file is used. Empty: call
	// events are ignored.
	AccessTokenFile string `yaml:"access_token_file,omitempty"`
	// API is the Webex REST API's base (default in DefaultWebhooks).
	API string `yaml:"api,omitempty"`
}

// webhookFiles are the webhooks' *_file paths, for resolveFiles.
func (c *Config) webhookFiles() []*string {
	w := c.Webhooks
	if w == nil {
		return nil
	}
	var out []*string
	if w.Zoom != nil {
		out = append(out, &w.Zoom.SecretTokenFile)
	}
	if w.Webex != nil {
		out = append(out, &w.Webex.SecretFile, &w.Webex.AccessTokenFile)
	}
	return out
}

// loadWebhooks fills the webhooks' defaults and reads their *_file
// secrets, as readSecretFile does for graph.client_secret_file.
func (c *Config) loadWebhooks() []Problem {
	w := c.Webhooks
	if w == nil {
		return nil
	}
	def := DefaultWebhooks()
	if w.Listen == "" {
		w.Listen = def.Listen
	}
	if w.MaxUnscheduled == 0 {
		w.MaxUnscheduled = def.MaxUnscheduled
	}
	var problems []Problem
	read := func(path string, file *string, secret *Secret) {
		if *file == "" || *secret != "" {
			return
		}
		data, err := os.ReadFile(*file)
		if err != nil {
			problems = append(problems, Problem{Path: path, Msg: err.Error()})
			return
		}
		s := strings.TrimSpace(string(data))
		if s == "" {
			problems = append(problems, Problem{Path: path, Msg: fmt.Sprintf("%s is empty", *file)})
			return
		}
		*secret, *file = Secret(s), ""
	}
	if w.Zoom != nil {
		read("webhooks.zoom.secret_token_file", &w.Zoom.SecretTokenFile, &w.Zoom.SecretToken)
	}
	if x := w.Webex; x != nil {
		read("webhooks.webex.secret_file", &x.SecretFile, &x.Secret)
		if x.API == "" {
			x.API = DefaultWebhooks().Webex.API
		}
		if x.AccessTokenFile != "" {
			if _, err := os.Stat(x.AccessTokenFile); err != nil {
				problems = append(problems, Problem{Path: "webhooks.webex.access_token_file", Msg: err.Error()})
			}
		}
	}
	return problems
}

func (c *Config) validateWebhooks(k *checker) {
	w := c.Webhooks
	if w == nil {
		return
	}
	if _, port, err := net.SplitHostPort(w.Listen); err != nil || func() bool { _, err := strconv.ParseUint(port, 10, 16); return err != nil }() {
		k.add("webhooks.listen", "must be host:port such as \":8081\" (got %q)", w.Listen)
	} else if w.Listen == c.Server.Listen {
		k.add("webhooks.listen", "must differ from server.listen (%q): the webhook listener is the one exposed to Zoom and Webex", w.Listen)
	}
	if w.Zoom == nil && w.Webex == nil {
		k.add("webhooks", "set zoom, webex or both")
	}
	if z := w.Zoom; z != nil && (z.SecretToken == "") == (z.SecretTokenFile == "") {
		k.add("webhooks.zoom", "set one of secret_token or secret_token_file")
	}
	if x := w.Webex; x != nil && (x.Secret == "") == (x.SecretFile == "") {
		k.add("webhooks.webex", "set one of secret or secret_file")
	}
	if x := w.Webex; x != nil && x.API != "" {
		if u, err := url.Parse(x.API); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			k.add("webhooks.webex.api", "must be an http(s) URL such as %q (got %q)", DefaultWebhooks().Webex.API, x.API)
		}
	}
	positive(k, "webhooks.max_unscheduled", w.MaxUnscheduled)
}
