package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
)

// TestRunAdminAndStatusPage runs the daemon with an admin token: the
// status page shows the meeting in progress without a secret; an admin
// request without the token, or shaped like a browser's forgery, is
// refused even from loopback and changes nothing; the CLI next to the
// daemon sends the token from the same configuration and is obeyed.
func TestRunAdminAndStatusPage(t *testing.T) {
	e := newE2E(t, 2*time.Second, time.Minute)
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(filepath.Dir(e.cfgPath), "admin-token")
	if err := os.WriteFile(tokenFile, []byte("4dm1n-t0k3n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "server:\n", "server:\n  admin_token_file: admin-token\n", 1))
	if err := os.WriteFile(e.cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, e.cfgPath)
	addr := d.serving(t)
	waitCalls(t, e.g, 1, time.Until(e.start)+5*time.Second)

	// The status page: alice busy in the Zoom call, no secret.
	page := get(t, "http://"+addr+"/")
	for _, want := range []string{"alice@contoso.com", "Zoom call", "zoom", "healthy", "Nobody is held back."} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q:\n%s", want, page)
		}
	}
	for _, leak := range []string{"s3cr3t", e.secret, "4dm1n-t0k3n"} {
		if strings.Contains(page, leak) {
			t.Errorf("the status page shows a secret (%q)", leak)
		}
	}

	// Refused, from loopback: no token; the no-cors forgery.
	post := func(headers map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+"/-/clear", strings.NewReader(`{"all":true}`))
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(map[string]string{"Content-Type": "application/json"}); code != 401 {
		t.Errorf("clear from loopback without the token = %d; want 401", code)
	}
	if code := post(map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": "http://evil.example",
		"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Authorization": "Bearer 4dm1n-t0k3n"}); code != 403 {
		t.Errorf("no-cors forgery (even with the token) = %d; want 403", code)
	}
	if n := len(e.g.PresenceCalls()); n != 1 {
		t.Errorf("presence calls after refused requests = %d; want 1 (the set)", n)
	}
	// The daemon's log reaches us through a pipe: wait for the lines.
	refusals := func() int { return strings.Count(d.log(), `"msg":"admin request refused"`) }
	if !testutil.WaitUntil(5*time.Second, func() bool { return refusals() >= 2 }) || refusals() != 2 {
		t.Errorf("refusals logged %d times; want 2:\n%s", refusals(), d.log())
	}

	// The CLI sends the token: resync changes nothing, clear clears.
	if stdout, stderr, code := runCLI(t, nil, "resync", "-config", e.cfgPath); code != 0 || !strings.Contains(stdout, "no presence changes") {
		t.Errorf("resync next to the daemon: exit %d, stdout %q, stderr %q; want 0 and no changes", code, stdout, stderr)
	}
	if stdout, stderr, code := runCLI(t, nil, "clear", "-config", e.cfgPath, "-user", "alice@contoso.com"); code != 0 || !strings.Contains(stdout, "clear alice@contoso.com (operator)") {
		t.Errorf("clear next to the daemon: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	calls := e.g.PresenceCalls()
	if len(calls) != 2 || calls[1].Op != graphtest.OpClearPresence {
		t.Errorf("presence calls = %+v; want the set, then the operator's clear", calls)
	}
	// The page says why alice is no longer set.
	if page := get(t, "http://"+addr+"/"); !strings.Contains(page, "cleared by operator") {
		t.Errorf("status page after the clear lacks the operator's hold:\n%s", page)
	}

	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
}
