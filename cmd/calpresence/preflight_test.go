package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// preflightConfig writes a configuration in a fresh folder: graph lines
// (indented under graph:), the state path and extra top-level YAML.
func preflightConfig(t *testing.T, graph, statePath, extra string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	if statePath == "" {
		statePath = filepath.Join(dir, "state", "state.db")
	}
	cfg := fmt.Sprintf(`graph:
  tenant_id: t
  client_id: c
%s
state:
  path: %s
%s
sources:
  - name: zoom
    url: file:feed.ics
    users: [alice@contoso.com]
`, graph, statePath, extra)
	path = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// TestValidateChecksWhatRunNeeds: validate refuses what run would refuse at
// start (files it cannot read or use, a state folder it cannot write), with
// exit 2 and the key and file named, and run refuses it the same way.
func TestValidateChecksWhatRunNeeds(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "cert.pfx")
	if err := os.WriteFile(garbage, []byte("\x30\x82not pkcs12"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name               string
		graph, state, more string
		want               string
	}{
		{"certificate missing", "  auth: client_certificate\n  certificate_file: nope.pem", "", "",
			"graph.certificate_file: open DIR/nope.pem: no such file or directory"},
		{"certificate without its key", "  auth: client_certificate\n  certificate_file: " + abs(t, "../../config/testdata/client-cert-only.pem"), "", "",
			"graph.certificate_file: " + abs(t, "../../config/testdata/client-cert-only.pem") + ": no private key"},
		// Not PEM: PKCS#12, which the Graph client parses as run does.
		{"certificate neither PEM nor PKCS#12", "  auth: client_certificate\n  certificate_file: " + garbage, "", "",
			"graph: certificate_file " + garbage + ": "},
		{"CA file missing", "  client_secret: s\n  ca_file: ca.pem", "", "",
			"graph.ca_file: open DIR/ca.pem: no such file or directory"},
		{"admin token file missing", "  client_secret: s", "", "server:\n  listen: \"\"\n  admin_token_file: admin-token",
			"server.admin_token_file: open DIR/admin-token: no such file or directory"},
		{"state folder not writable", "  client_secret: s", notDir + "/state.db", "",
			"state.path: cannot create " + notDir + "/state.db: " + notDir + " is not a directory"},
		{"china without an endpoint", "  client_secret: s\n  cloud: china", "", "",
			"graph.cloud: china: Microsoft Graph documents setPresence for the global service and US Government L4/L5 only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, cfg := preflightConfig(t, tt.graph, tt.state, tt.more)
			want := strings.ReplaceAll(tt.want, "DIR", dir)
			for _, cmd := range []string{"validate", "run"} {
				stdout, stderr, code := runCLI(t, nil, cmd, "-config", cfg)
				if code != 2 || !strings.Contains(stderr, want) {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2 and %q", cmd, code, stdout, stderr, want)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "state")); !os.IsNotExist(err) {
				t.Errorf("the state folder was created (stat: %v); want nothing written", err)
			}
		})
	}
}

// TestValidateAcceptsWhatRunNeeds: with every file in place, validate
// passes and leaves nothing behind.
func TestValidateAcceptsWhatRunNeeds(t *testing.T) {
	dir, cfg := preflightConfig(t, "  auth: client_certificate\n  certificate_file: "+abs(t, "../../config/testdata/client.pem")+
		"\n  ca_file: "+abs(t, "../../config/testdata/ca.pem"), "", "server:\n  admin_token_file: admin-token")
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte("t0k3n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, nil, "validate", "-config", cfg)
	if code != 0 || !strings.Contains(stdout, ": ok: ") {
		t.Errorf("validate: exit %d, stdout %q, stderr %q; want 0", code, stdout, stderr)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("validate left files behind in %s: %v; want config.yaml and admin-token only", dir, entries)
	}
}

// TestAdminTokenUnreadableFailsTheCLI: resync and clear next to a daemon
// must not ask it without the token they cannot read.
func TestAdminTokenUnreadableFailsTheCLI(t *testing.T) {
	_, cfg := preflightConfig(t, "  client_secret: s", "", fmt.Sprintf("server:\n  listen: %q\n  admin_token_file: missing-token", freeAddr(t)))
	for _, args := range [][]string{{"resync"}, {"clear", "-all"}} {
		stdout, stderr, code := runCLI(t, nil, append(args, "-config", cfg)...)
		if code != 2 || !strings.Contains(stderr, "server.admin_token_file: open ") || !strings.Contains(stderr, "missing-token: no such file or directory") {
			t.Errorf("%s with an unreadable admin token: exit %d, stdout %q, stderr %q; want 2 naming server.admin_token_file", args[0], code, stdout, stderr)
		}
	}
}

// TestBadLogFlags: a -log-level or -log-format the CLI does not know is a
// usage error (exit 2), not quietly the default.
func TestBadLogFlags(t *testing.T) {
	for _, cmd := range []string{"run", "resync", "clear"} {
		for _, flag := range []string{"-log-level=verbose", "-log-format=xml"} {
			_, stderr, code := runCLI(t, nil, cmd, flag, "-config", "testdata/plan.yaml")
			name := strings.SplitN(flag, "=", 2)[0]
			if code != 2 || !strings.Contains(stderr, `invalid value "`+strings.SplitN(flag, "=", 2)[1]+`" for flag `+name) {
				t.Errorf("%s %s: exit %d, stderr %q; want 2 naming the flag and value", cmd, flag, code, stderr)
			}
		}
	}
	// The known values pass the parse (validate fails later only if the
	// config is bad; plan.yaml is fine).
	if _, stderr, code := runCLI(t, nil, "resync", "-log-level=WARN", "-log-format=text", "-dry-run", "-config", "testdata/plan.yaml"); code == 2 {
		t.Errorf("resync with good log flags: exit 2, stderr %q", stderr)
	}
}

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
