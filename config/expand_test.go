package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExpand(t *testing.T) {
	vars := env(map[string]string{"A": "alpha", "EMPTY": "", "_X1": "x1", "TOKEN": "a#b: c"})
	tests := []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "alpha"},
		{in: "pre-${A}-post", want: "pre-alpha-post"},
		{in: "${A}${_X1}", want: "alphax1"},
		{in: "${EMPTY}", want: ""},
		{in: "x=${TOKEN}", want: "x=a#b: c"},
		{in: "$5 and a$b and $A and $", want: "$5 and a$b and $A and $"},
		{in: "$${A}", want: "${A}"},
		{in: "$$${A}", want: "$alpha"},
		{in: "$$$${A}", want: "$${A}"},
		{in: "$$5 $$ $${", want: "$$5 $$ ${"},
		{in: "cost $${A} is ${A}", want: "cost ${A} is alpha"},
		{in: "${MISSING}", err: "environment variable MISSING is not set"},
		{in: "${A}${MISSING}", err: "environment variable MISSING is not set"},
		{in: "${}", err: `invalid variable reference "${}" (want ${NAME}; write $${ for a literal ${)`},
		{in: "${1A}", err: `invalid variable reference "${1A}" (want ${NAME}; write $${ for a literal ${)`},
		{in: "${A:-x}", err: `invalid variable reference "${A:-x}" (want ${NAME}; write $${ for a literal ${)`},
		{in: "x${A", err: `invalid variable reference "${A" (want ${NAME}; write $${ for a literal ${)`},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, vars)
		switch {
		case tt.err != "":
			if err == nil || err.Error() != tt.err {
				t.Errorf("expand(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
		case err != nil || got != tt.want:
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

const expandConfig = `graph:
  tenant_id: ${TENANT}
  client_id: "${CLIENT}"
  client_secret: ${SECRET}
  max_concurrency: ${CONCURRENCY}
  dry_run: ${DRY}
  timeout: '${TIMEOUT}'
schedule:
  poll_interval: 2m # a comment
state:
  path: /data/$5/a$b/${EMPTY}state.db
sources:
  - name: zoom
    url: https://example.zoom.us/feed.ics?token=${ZOOM_TOKEN}&x=1
    headers: {Authorization: "Bearer ${FEED_TOKEN}"}
    users: ["${USER1}"]
    include: {summary: "$${NOT_EXPANDED}"}
`

func TestParseExpands(t *testing.T) {
	vars := map[string]string{
		"TENANT":      "tenant #1",
		"CLIENT":      "client: two",
		"SECRET":      "- [not, a, list]",
		"CONCURRENCY": "7",
		"DRY":         "true",
		"TIMEOUT":     "1m30s",
		"EMPTY":       "",
		"ZOOM_TOKEN":  "abc#def",
		"FEED_TOKEN":  "t: {x}",
		"USER1":       "alice@contoso.com",
	}
	c, err := parse([]byte(expandConfig), "config.yaml", env(vars))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, tt := range []struct{ name, got, want string }{
		{"graph.tenant_id", c.Graph.TenantID, "tenant #1"},
		{"graph.client_id", c.Graph.ClientID, "client: two"},
		{"graph.client_secret", string(c.Graph.ClientSecret), "- [not, a, list]"},
		{"state.path", c.State.Path, "/data/$5/a$b/state.db"},
		{"sources[0].url", c.Sources[0].URL, "https://example.zoom.us/feed.ics?token=abc#def&x=1"},
		{"sources[0].headers.Authorization", c.Sources[0].Headers["Authorization"], "Bearer t: {x}"},
		{"sources[0].users[0]", c.Sources[0].Users[0], "alice@contoso.com"},
		{"sources[0].include.summary", c.Sources[0].Include.Summary, "${NOT_EXPANDED}"},
	} {
		if tt.got != tt.want {
			t.Errorf("Parse: %s = %q; want %q", tt.name, tt.got, tt.want)
		}
	}
	if c.Graph.MaxConcurrency != 7 || !c.Graph.DryRun || c.Graph.Timeout != 90*time.Second {
		t.Errorf("Parse: max_concurrency %d, dry_run %v, timeout %v; want 7, true, 1m30s",
			c.Graph.MaxConcurrency, c.Graph.DryRun, c.Graph.Timeout)
	}
}

func TestParseUnsetVariables(t *testing.T) {
	// Every unset variable is reported, each with its line, and nothing
	// else is checked until they are fixed.
	_, err := parse([]byte(expandConfig), "config.yaml", env(map[string]string{"CONCURRENCY": "4", "DRY": "false", "TIMEOUT": "1s", "EMPTY": ""}))
	want := strings.Join([]string{
		"config.yaml:2: graph.tenant_id: environment variable TENANT is not set",
		"config.yaml:3: graph.client_id: environment variable CLIENT is not set",
		"config.yaml:4: graph.client_secret: environment variable SECRET is not set",
		"config.yaml:14: sources[0].url: environment variable ZOOM_TOKEN is not set",
		"config.yaml:15: sources[0].headers.Authorization: environment variable FEED_TOKEN is not set",
		"config.yaml:16: sources[0].users[0]: environment variable USER1 is not set",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("Parse with unset variables: error =\n%v\nwant\n%s", err, want)
	}
}

func TestParseBadExpandedValue(t *testing.T) {
	// An expanded value of the wrong type is reported as written, since
	// the value itself may be a secret.
	data := []byte("graph:\n  timeout: ${T}\n  max_concurrency: ${N}\n")
	_, err := parse(data, "config.yaml", env(map[string]string{"T": "hunter2", "N": "hunter2"}))
	want := "config.yaml:2: graph.timeout: invalid duration \"${T}\" (use Go durations such as 90s, 5m, 1h30m)\n" +
		"config.yaml:3: graph.max_concurrency: must be an integer (got \"${N}\")"
	if err == nil || err.Error() != want {
		t.Errorf("Parse error =\n%v\nwant\n%s", err, want)
	}
}

func TestParseKeysAreNotExpanded(t *testing.T) {
	_, err := parse([]byte("${A}: 1\n"), "config.yaml", env(map[string]string{"A": "graph"}))
	want := `config.yaml:1: unknown field "${A}"`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v; want %s", err, want)
	}
}

func TestParseDurations(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "90s", want: 90 * time.Second},
		{in: "2m", want: 2 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: `"45s"`, want: 45 * time.Second},
		{in: "0", want: 0}, // Go accepts a bare 0
		{in: "5 minutes", err: `config.yaml:2: schedule.horizon: invalid duration "5 minutes" (use Go durations such as 90s, 5m, 1h30m)`},
		{in: "300", err: `config.yaml:2: schedule.horizon: invalid duration "300" (use Go durations such as 90s, 5m, 1h30m)`},
		{in: "1d", err: `config.yaml:2: schedule.horizon: invalid duration "1d" (use Go durations such as 90s, 5m, 1h30m)`},
		{in: "[1m]", err: `config.yaml:2: schedule.horizon: must be a single value, not a list`},
	}
	for _, tt := range tests {
		data := []byte("schedule:\n  horizon: " + tt.in + "\n")
		d := &decoder{lookup: env(nil), lines: map[string]int{}}
		c := Default()
		root, perr := parseNode(data)
		if perr != nil {
			t.Fatalf("parseNode(%q): %v", data, perr)
		}
		d.value(root, reflectValue(c), "")
		if tt.err != "" {
			err := newValidationError("config.yaml", d.problems)
			if len(d.problems) == 0 || err.Error() != tt.err {
				t.Errorf("decode horizon %s: problems %v; want %s", tt.in, d.problems, tt.err)
			}
			continue
		}
		if len(d.problems) > 0 || c.Schedule.Horizon != tt.want {
			t.Errorf("decode horizon %s = %v, %v; want %v", tt.in, c.Schedule.Horizon, d.problems, tt.want)
		}
	}
}

func TestParseAnchorsAndMerge(t *testing.T) {
	data := []byte(`graph: {tenant_id: t, client_id: c, client_secret: s}
x-common: &common
  users: [alice@contoso.com]
  headers: {Authorization: "Bearer x"}
  poll_interval: 1m
`)
	// x-common is not a key of the config: anchors live under keys the
	// config knows, here the first source.
	_, err := parse(data, "config.yaml", env(nil))
	if err == nil || !strings.Contains(err.Error(), `config.yaml:2: unknown field "x-common"`) {
		t.Errorf("Parse with x-common = %v; want unknown field", err)
	}

	data = []byte(`graph: {tenant_id: t, client_id: c, client_secret: s}
sources:
  - &zoom
    name: zoom
    url: https://example.zoom.us/a.ics
    users: &people [alice@contoso.com, bob@contoso.com]
    poll_interval: 1m
  - <<: *zoom
    name: zoom-b
    url: https://example.zoom.us/b.ics
  - name: zoom-c
    url: https://example.zoom.us/c.ics
    users: *people
`)
	c, err := parse(data, "config.yaml", env(nil))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	b, cc := c.Sources[1], c.Sources[2]
	if b.Name != "zoom-b" || b.URL != "https://example.zoom.us/b.ics" || len(b.Users) != 2 || b.PollInterval != time.Minute {
		t.Errorf("merged source = %+v; want zoom-b with zoom's users and poll_interval", b)
	}
	if len(cc.Users) != 2 || cc.PollInterval != 5*time.Minute {
		t.Errorf("aliased users source = %+v; want 2 users, inherited poll_interval", cc)
	}
}

func TestParseAliasBomb(t *testing.T) {
	// Each mapping merges the previous one ten times: 10^8 pairs if
	// expanded naively.
	var b strings.Builder
	b.WriteString("sources:\n  - &m0 {name: a, url: \"https://x.example/a.ics\", users: [u@x.example]}\n")
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "  - &m%d {<<: [", i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*m%d", i-1)
		}
		b.WriteString("]}\n")
	}
	_, err := parse([]byte(b.String()), "config.yaml", env(nil))
	if err == nil || !strings.Contains(err.Error(), "document too deeply aliased") {
		t.Errorf("Parse(alias bomb) = %v; want a size error", err)
	}
}

func TestParseAliasCycle(t *testing.T) {
	tests := []struct{ data, want string }{
		{"sources:\n  - &a {name: a, <<: *a}\n", "config.yaml:2: sources[0]: alias *a refers to itself"},
		// Aliases outside merges cannot loop: the Go types bound the depth.
		{"sources: &s\n  - {name: a, domains: *s}\n", "config.yaml:2: sources[0].domains[0]: must be a single value, not a mapping"},
	}
	for _, tt := range tests {
		_, err := parse([]byte(tt.data), "config.yaml", env(nil))
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%q) = %v; want %s", tt.data, err, tt.want)
		}
	}
}

func TestParseManySources(t *testing.T) {
	// BENCHMARKS.md: 10,000 feeds in one file, sharing an anchored
	// header and user list.
	var b strings.Builder
	b.WriteString("graph: {tenant_id: t, client_id: c, client_secret: s}\nsources:\n")
	b.WriteString("  - {name: feed-0, url: \"https://x.example/0.ics\", users: &u [a@x.example, b@x.example], headers: &h {Authorization: x}}\n")
	for i := 1; i < 10000; i++ {
		fmt.Fprintf(&b, "  - {name: feed-%d, url: \"https://x.example/%d.ics?token=%d\", users: *u, headers: *h}\n", i, i, i)
	}
	c, err := parse([]byte(b.String()), "config.yaml", env(nil))
	if err != nil {
		t.Fatalf("Parse(10,000 sources): %v", err)
	}
	if len(c.Sources) != 10000 || len(c.Sources[9999].Users) != 2 {
		t.Errorf("Parse(10,000 sources) = %d sources; want 10000 with 2 users each", len(c.Sources))
	}
}

func TestParseIntegers(t *testing.T) {
	data := []byte("graph: {dry_run: true, max_concurrency: 010, rate_limit: 1_000}\nschedule: {max_feed_bytes: 10_485_760}\nsources: [{name: a, url: \"file:///a.ics\", match: organizer}]\n")
	c, err := parse(data, "config.yaml", env(nil))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Graph.MaxConcurrency != 10 || c.Graph.RateLimit != 1000 || c.Schedule.MaxFeedBytes != 10<<20 {
		t.Errorf("Parse: max_concurrency %d, rate_limit %d, max_feed_bytes %d; want 10, 1000, %d",
			c.Graph.MaxConcurrency, c.Graph.RateLimit, c.Schedule.MaxFeedBytes, 10<<20)
	}
	_, err = parse([]byte("graph: {max_concurrency: 99999999999999999999}\n"), "config.yaml", env(nil))
	want := `config.yaml:1: graph.max_concurrency: must be an integer (got "99999999999999999999")`
	if err == nil || err.Error() != want {
		t.Errorf("Parse(overflow) = %v; want %s", err, want)
	}
}

func TestParseNullElements(t *testing.T) {
	data := []byte("graph: {dry_run: true}\nsources:\n  - {name: a, url: \"https://x.example/a.ics\", users: [~, null], headers: {X-A: ~}}\n")
	_, err := parse(data, "config.yaml", env(nil))
	want := "config.yaml:3: sources[0].users[0]: must not be empty\nconfig.yaml:3: sources[0].users[1]: must not be empty"
	if err == nil || err.Error() != want {
		t.Errorf("Parse(null users) = %v; want %s", err, want)
	}
}

func TestParseEmpty(t *testing.T) {
	_, err := parse(nil, "config.yaml", env(nil))
	want := strings.Join([]string{
		"config.yaml: graph.tenant_id: required (unless dry_run)",
		"config.yaml: graph.client_id: required (unless dry_run)",
		"config.yaml: graph: set one of client_secret or client_secret_file",
		"config.yaml: sources: at least one source is required",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("Parse(empty) error =\n%v\nwant\n%s", err, want)
	}
}

func TestClientSecretFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "graph-secret"), []byte("  s3cr3t\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "blank"), []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := func(secretFile string) []byte {
		return []byte(`graph:
  tenant_id: t
  client_id: c
  client_secret_file: ` + secretFile + `
  certificate_file: ""
sources:
  - {name: a, url: "https://x.example/a.ics", users: [u@x.example]}
`)
	}
	path := filepath.Join(dir, "config.yaml")

	for _, secretFile := range []string{"graph-secret", filepath.Join(dir, "graph-secret")} {
		c, err := parse(cfg(secretFile), path, env(nil))
		if err != nil {
			t.Fatalf("Parse with client_secret_file %s: %v", secretFile, err)
		}
		if c.Graph.ClientSecret != "s3cr3t" {
			t.Errorf("client_secret_file %s: ClientSecret = %q; want %q", secretFile, string(c.Graph.ClientSecret), "s3cr3t")
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Validate() after reading client_secret_file = %v; want nil", err)
		}
	}

	_, err := parse(cfg("blank"), path, env(nil))
	want := path + ":4: graph.client_secret_file: " + filepath.Join(dir, "blank") + " is empty"
	if err == nil || err.Error() != want {
		t.Errorf("Parse with a blank secret file: error = %v; want %s", err, want)
	}
	_, err = parse(cfg("missing"), path, env(nil))
	want = path + ":4: graph.client_secret_file: open " + filepath.Join(dir, "missing") + ": no such file or directory"
	if err == nil || err.Error() != want {
		t.Errorf("Parse with a missing secret file: error = %v; want %s", err, want)
	}
}

func TestRelativeFilesFollowConfig(t *testing.T) {
	data := []byte(`graph:
  dry_run: true
  auth: client_certificate
  certificate_file: certs/graph.pem
  ca_file: /etc/ssl/ca.pem
schedule:
  ca_file: proxy-ca.pem
server:
  admin_token_file: admin
sources:
  - {name: a, url: "file:///feeds/a.ics", users: [u@x.example]}
`)
	c, err := parse(data, "/etc/calpresence/config.yaml", env(nil))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Graph.CertificateFile != "/etc/calpresence/certs/graph.pem" || c.Graph.CAFile != "/etc/ssl/ca.pem" ||
		c.Server.AdminTokenFile != "/etc/calpresence/admin" {
		t.Errorf("Parse: certificate_file %q, ca_file %q, admin_token_file %q; want them next to the config",
			c.Graph.CertificateFile, c.Graph.CAFile, c.Server.AdminTokenFile)
	}
	if c.Schedule.CAFile != "/etc/calpresence/proxy-ca.pem" {
		t.Errorf("Parse: schedule.ca_file %q; want it next to the config", c.Schedule.CAFile)
	}
}

func TestDryRunNeedsNoCredentials(t *testing.T) {
	data := []byte("graph: {dry_run: true}\nsources:\n  - {name: a, url: \"https://x.example/a.ics\", match: organizer}\n")
	if _, err := parse(data, "config.yaml", env(nil)); err != nil {
		t.Errorf("Parse(dry run without credentials) = %v; want nil", err)
	}
}
