package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/sync/engine"
)

// TestRunReload runs the real daemon and changes its configuration while
// alice is in a meeting: a source added with SIGHUP shows on /readyz; a
// file with a typo sent with SIGHUP is refused, the daemon keeps the
// configuration in force and /readyz says why; `calpresence reload` asks
// the daemon, prints what changed, and fails when the daemon refuses the
// file. alice, busy throughout, sees no Graph call but the first set.
func TestRunReload(t *testing.T) {
	e := newE2E(t, 2*time.Second, time.Minute)
	good, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(e.cfgPath)
	d := startDaemon(t, e.cfgPath)
	addr := d.serving(t)
	waitCalls(t, e.g, 1, time.Until(e.start)+5*time.Second)
	d.waitLog(t, `"msg":"presence set"`, 5*time.Second)

	readyz := func() engine.Readiness {
		t.Helper()
		var r engine.Readiness
		if err := json.Unmarshal([]byte(get(t, "http://"+addr+"/readyz?verbose")), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	write := func(cfg string) {
		t.Helper()
		if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hup := func() {
		t.Helper()
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// A source added: a file feed with the same person.
	if err := os.WriteFile(filepath.Join(dir, "team.ics"), []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//e2e//EN\r\nEND:VCALENDAR\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withTeam := string(good) + "  - name: team\n    url: file:team.ics\n    users: [alice@contoso.com]\n"
	write(withTeam)
	hup()
	d.waitLog(t, `"msg":"configuration reloaded","added":1,"removed":0,"changed":0,"unchanged":1`, 10*time.Second)
	if !testutil.WaitUntil(10*time.Second, func() bool {
		r := readyz()
		return len(r.Sources) == 2 && r.Sources[0].Name == "team" && r.Sources[0].Loaded
	}) {
		t.Fatalf("/readyz sources after SIGHUP = %+v; want team read, and zoom", readyz().Sources)
	}

	// A typo: refused, and said so on /readyz, which stays ready.
	write(strings.Replace(withTeam, "poll_interval: 1s", "poll_intervl: 1s", 1))
	hup()
	d.waitLog(t, `"msg":"reload refused; the configuration in force stays"`, 10*time.Second)
	r := readyz()
	if !r.Ready || r.Reload == nil || !strings.Contains(r.Reload.Error, `unknown field "poll_intervl"`) {
		t.Errorf("/readyz after a refused reload = %+v; want ready, with the reload error", r)
	}
	if !slices.ContainsFunc(r.Degraded, func(s string) bool { return strings.HasPrefix(s, "reload failed at ") }) {
		t.Errorf("/readyz degraded = %q; want a reload failed line", r.Degraded)
	}
	if len(r.Sources) != 2 {
		t.Errorf("/readyz sources = %+v; want both still in force", r.Sources)
	}

	// The CLI: applied (nothing changed but the typo fixed) ...
	write(withTeam)
	stdout, stderr, code := runCLI(t, nil, "reload", "-config", e.cfgPath)
	if code != 0 || !strings.Contains(stdout, "0 added, 0 removed, 0 changed, 2 unchanged") {
		t.Errorf("calpresence reload: exit %d, stdout %q, stderr %q; want 0 and the counts", code, stdout, stderr)
	}
	if r := readyz(); r.Reload == nil || r.Reload.Error != "" {
		t.Errorf("/readyz reload after a good one = %+v; want no error", r.Reload)
	}
	// ... and refused: a file the daemon cannot read (its own checks).
	write(strings.Replace(withTeam, "schedule:\n", "schedule:\n  ca_file: missing.pem\n", 1))
	stdout, stderr, code = runCLI(t, nil, "reload", "-config", e.cfgPath)
	if code != 2 || !strings.Contains(stderr, "the daemon refused the configuration") || !strings.Contains(stderr, "schedule.ca_file") {
		t.Errorf("calpresence reload of a refused file: exit %d, stdout %q, stderr %q; want 2 naming schedule.ca_file", code, stdout, stderr)
	}

	if n := len(e.g.PresenceCalls()); n != 1 {
		t.Errorf("presence calls = %d (%+v); want only the first set: alice stayed busy", n, e.g.PresenceCalls())
	}
	if get(t, "http://"+addr+"/healthz") != "ok\n" {
		t.Error("the daemon does not answer /healthz after the reloads")
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-d.done; err != nil {
		t.Errorf("daemon exit after SIGTERM: %v; want 0", err)
	}

	// No daemon: nothing to reload.
	write(withTeam)
	_, stderr, code = runCLI(t, nil, "reload", "-config", e.cfgPath)
	if code != 1 || !strings.Contains(stderr, "no daemon answers") {
		t.Errorf("calpresence reload with no daemon: exit %d, stderr %q; want 1, no daemon", code, stderr)
	}
}
