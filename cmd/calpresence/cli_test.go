package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update): %v", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestPlanJSON(t *testing.T) {
	stdout, stderr, code := runCLI(t, nil, "plan", "-config", "testdata/plan.yaml",
		"-from", "2027-03-01T00:00:00Z", "-to", "2027-03-31T00:00:00Z", "-output", "json")
	if code != 0 {
		t.Fatalf("plan exit %d; want 0\nstderr: %s", code, stderr)
	}
	golden(t, "plan.json.golden", stdout)
}

func TestPlanTable(t *testing.T) {
	stdout, stderr, code := runCLI(t, nil, "plan", "-config", "testdata/plan.yaml",
		"-from", "2027-03-01T00:00:00Z", "-to", "2027-03-31T00:00:00Z", "-user", "alice@contoso.com")
	if code != 0 {
		t.Fatalf("plan exit %d; want 0\nstderr: %s", code, stderr)
	}
	golden(t, "plan.table.golden", stdout)
}

func TestPlanBrokenFeed(t *testing.T) {
	stdout, stderr, code := runCLI(t, nil, "plan", "-config", "testdata/plan-broken.yaml",
		"-from", "2027-03-01T00:00:00Z", "-to", "2027-03-31T00:00:00Z", "-output", "json")
	if code != 1 {
		t.Errorf("plan with broken feeds exit %d; want 1", code)
	}
	if n := strings.Count(stdout, "\n"); n != 4 {
		t.Errorf("plan printed %d lines from the good feed; want 4\n%s", n, stdout)
	}
	for _, want := range []string{`source "missing"`, `source "truncated"`, "END:VCALENDAR"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// TestPlanDroppedData: calendar data a feed loses is named on stderr, with
// the source, line and UID; the feed's other events are printed and the
// exit status is 0. The Android exporter's DTSTART:20270303T170000T is
// repaired, not lost.
func TestPlanDroppedData(t *testing.T) {
	stdout, stderr, code := runCLI(t, nil, "plan", "-config", "testdata/plan-dropped.yaml",
		"-from", "2027-03-01T00:00:00Z", "-to", "2027-03-31T00:00:00Z", "-output", "json")
	if code != 0 {
		t.Errorf("plan exit %d; want 0\nstderr: %s", code, stderr)
	}
	for _, uid := range []string{"good@example.com", "android-1@example.com"} {
		if !strings.Contains(stdout, `"uid":"`+uid+`"`) {
			t.Errorf("plan stdout lacks %s:\n%s", uid, stdout)
		}
	}
	if n := strings.Count(stdout, "\n"); n != 2 {
		t.Errorf("plan printed %d lines; want 2\n%s", n, stdout)
	}
	want := `warning: source "android": line 18: UID "unreadable@example.com": VEVENT skipped: DTSTART: invalid value "2027-03-04 10:00"
warning: source "android": line 25: UID "no-end@example.com": DTEND: invalid value "20270305T1100000Z", ignored: the event has no length and makes no one busy
`
	if stderr != want {
		t.Errorf("plan stderr:\n%s\nwant:\n%s", stderr, want)
	}
	// A feed that loses nothing says nothing.
	_, stderr, code = runCLI(t, nil, "plan", "-config", "testdata/plan.yaml",
		"-from", "2027-03-01T00:00:00Z", "-to", "2027-03-31T00:00:00Z", "-output", "json")
	if code != 0 || stderr != "" {
		t.Errorf("plan of a clean feed: exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
}

func TestValidate(t *testing.T) {
	stdout, stderr, code := runCLI(t, nil, "validate", "-config", "testdata/plan.yaml")
	if code != 0 || !strings.Contains(stdout, "2 sources") {
		t.Errorf("validate valid config: exit %d, stdout %q, stderr %q; want exit 0 and a summary", code, stdout, stderr)
	}
	_, stderr, code = runCLI(t, nil, "validate", "-config", "testdata/invalid.yaml")
	if code != 2 {
		t.Errorf("validate invalid config: exit %d; want 2", code)
	}
	for _, want := range []string{"invalid.yaml:8: sources[0].name", "invalid.yaml:9: sources[0].url", "client_secret"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validate stderr lacks %q:\n%s", want, stderr)
		}
	}
	_, stderr, code = runCLI(t, nil, "validate", "-config", "testdata/invalid-typo.yaml")
	if want := `invalid-typo.yaml:4: schedule: unknown field "poll_intervl"`; code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("validate with a typo: exit %d, stderr %q; want 2 and %q", code, stderr, want)
	}
	if strings.Contains(stderr, "s3cr3t") {
		t.Errorf("validate leaked the feed token:\n%s", stderr)
	}
	_, stderr, code = runCLI(t, []string{"CALPRESENCE_CONFIG=testdata/nope.yaml"}, "validate")
	if code != 2 || !strings.Contains(stderr, "nope.yaml") {
		t.Errorf("validate missing file: exit %d, stderr %q; want 2 naming the file", code, stderr)
	}
}

func TestUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Usage:"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"plan", "-output", "xml", "-config", "testdata/plan.yaml"}, 2, "-output must be table or json"},
		{[]string{"plan", "-from", "yesterday", "-config", "testdata/plan.yaml"}, 2, "-from"},
		{[]string{"clear", "-config", "testdata/plan.yaml"}, 2, "set one of -user or -all"},
		{[]string{"plan", "-config", "testdata/plan.yaml", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"version"}, 0, "calpresence "},
		{[]string{"resync", "-config", "testdata/plan.yaml", "-source", "nope"}, 2, `no source named "nope"`},
		{[]string{"plan", "-config", "testdata/plan.yaml", "-source", "nope"}, 2, `unknown source "nope"`},
	} {
		stdout, stderr, code := runCLI(t, nil, tt.args...)
		if code != tt.code || !strings.Contains(stdout+stderr, tt.want) {
			t.Errorf("calpresence %v: exit %d, output %q; want exit %d containing %q", tt.args, code, stdout+stderr, tt.code, tt.want)
		}
	}
}

// TestResyncWithoutDaemonDryRun runs resync -dry-run with no daemon: one
// pass in memory that prints what it would do. The feed is written at test
// time around now, so the test does not depend on the date.
func TestResyncWithoutDaemonDryRun(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Minute)
	for _, tt := range []struct {
		name   string
		events [][2]time.Time // start, end
		want   string
	}{
		{"meeting-now", [][2]time.Time{{now.Add(-10 * time.Minute), now.Add(50 * time.Minute)}, {now.Add(3 * time.Hour), now.Add(4 * time.Hour)}},
			"would set alice@contoso.com (start) InAConferenceCall for "},
		{"meeting-later", [][2]time.Time{{now.Add(3 * time.Hour), now.Add(4 * time.Hour)}},
			"no presence changes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfgPath := writeDryRunFeed(t, tt.events)
			stdout, stderr, code := runCLI(t, nil, "resync", "-dry-run", "-config", cfgPath)
			if code != 0 {
				t.Fatalf("resync -dry-run exit %d; want 0\nstderr: %s", code, stderr)
			}
			if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], tt.want) {
				t.Errorf("resync -dry-run stdout = %q; want one line starting %q", stdout, tt.want)
			}
		})
	}
}

// writeDryRunFeed writes a feed of alice's meetings and a dry-run
// configuration reading it, and returns the configuration's path.
func writeDryRunFeed(t *testing.T, events [][2]time.Time) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calpresence test//EN\r\n")
	for i, ev := range events {
		fmt.Fprintf(&b, "BEGIN:VEVENT\r\nUID:meeting-%d\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:%s\r\nDTEND:%s\r\nSUMMARY:Zoom call %d\r\nEND:VEVENT\r\n",
			i, ev[0].Format("20060102T150405Z"), ev[1].Format("20060102T150405Z"), i)
	}
	b.WriteString("END:VCALENDAR\r\n")
	cfg := `graph:
  dry_run: true
state:
  path: ./unused.db
server:
  listen: ""
sources:
  - name: zoom
    url: file:feed.ics
    users: [alice@contoso.com]
`
	for name, body := range map[string]string{"feed.ics": b.String(), "config.yaml": cfg} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "config.yaml")
}
