package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestFatalErrorJSON: a command that logs prints the error that stops it as
// one JSON log line (its logs are JSON when stderr is not a terminal), then
// as plain text; the exit status is unchanged. -log-format text and
// commands that do not log print the plain text only.
func TestFatalErrorJSON(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		wantJSON bool
	}{
		{"run auto", []string{"run", "-config", "testdata/nope.yaml"}, 2, true},
		{"run json", []string{"run", "-log-format", "json", "-config", "testdata/nope.yaml"}, 2, true},
		{"run text", []string{"run", "-log-format=text", "-config", "testdata/nope.yaml"}, 2, false},
		{"resync auto", []string{"resync", "-config", "testdata/nope.yaml"}, 2, true},
		{"validate", []string{"validate", "-config", "testdata/nope.yaml"}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, nil, tt.args...)
			if code != tt.code {
				t.Errorf("%v: exit %d; want %d\nstderr: %s", tt.args, code, tt.code, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			plain := "calpresence " + tt.args[0] + ": "
			var rec struct {
				Level, Msg, Err string
				ExitCode        int `json:"exit_code"`
			}
			if !tt.wantJSON {
				if len(lines) != 1 || !strings.HasPrefix(lines[0], plain) {
					t.Errorf("%v: stderr = %q; want one plain line starting %q", tt.args, stderr, plain)
				}
				return
			}
			if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &rec) != nil || !strings.HasPrefix(lines[1], plain) {
				t.Fatalf("%v: stderr = %q; want a JSON line, then a plain line starting %q", tt.args, stderr, plain)
			}
			if rec.Level != "ERROR" || rec.Msg != "calpresence "+tt.args[0]+" failed" ||
				!strings.Contains(rec.Err, "nope.yaml") || rec.ExitCode != tt.code {
				t.Errorf("%v: JSON line = %+v; want level ERROR, msg %q, err naming nope.yaml, exit_code %d",
					tt.args, rec, "calpresence "+tt.args[0]+" failed", tt.code)
			}
			if lines[1] != plain+rec.Err {
				t.Errorf("%v: plain line = %q; want %q", tt.args, lines[1], plain+rec.Err)
			}
		})
	}
}
