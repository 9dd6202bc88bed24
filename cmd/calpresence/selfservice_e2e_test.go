package main

import (
	"crypto/rand"
	"fmt"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
)

// TestRunSelfserviceEndToEnd runs `calpresence run` with a selfservice
// block against the fake Entra and Graph (issue #22): alice, in a meeting
// now, signs in through the fake authority with a plain HTTP client and
// pauses (Graph sees her cleared), then resumes (set again); bob, free
// now, says he is on a call for 15 minutes (set Busy/InACall), then ends
// it (cleared).
func TestRunSelfserviceEndToEnd(t *testing.T) {
	g := graphtest.NewServer(t, graphtest.WithUsers(
		graphtest.User{ID: aliceID, UserPrincipalName: "alice@contoso.com", Mail: "alice@contoso.com"},
		graphtest.User{ID: bobID, UserPrincipalName: "bob@contoso.com", Mail: "bob@contoso.com"}))
	now := time.Now().Truncate(time.Second)
	feeds := map[string]string{
		"/alice.ics": icsMeeting("alice-running", now.Add(-time.Minute), now.Add(time.Hour)),
		"/bob.ics":   icsMeeting("bob-later", now.Add(3*time.Hour), now.Add(4*time.Hour)),
	}
	feedSrv := serveFeeds(t, feeds)

	dir := t.TempDir()
	key := filepath.Join(dir, "cookie")
	secret := make([]byte, 32)
	rand.Read(secret)
	if err := os.WriteFile(key, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	selfAddr := freeAddr(t)
	url := "http://" + selfAddr
	gc := g.Config()
	cfg := fmt.Sprintf(`graph:
  tenant_id: %s
  client_id: %s
  client_secret: ${E2E_SECRET}
  endpoint: %s
  authority_host: %s
  ca_file: %s
  readback_interval: 0s
schedule:
  poll_interval: 1s
state:
  path: %s
server:
  listen: "%s"
selfservice:
  listen: "%s"
  url: %s
  cookie_key_file: %s
sources:
  - name: alice
    url: %s/alice.ics
    users: [alice@contoso.com]
  - name: bob
    url: %s/bob.ics
    users: [bob@contoso.com]
`, gc.TenantID, gc.ClientID, gc.Endpoint, gc.AuthorityHost, gc.CAFile, filepath.Join(dir, "state.db"),
		freeAddr(t), selfAddr, url, key, feedSrv.URL, feedSrv.URL)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("E2E_SECRET", string(gc.ClientSecret))
	g.AddRedirectURI(url + "/auth/callback")

	d := startDaemon(t, cfgPath)
	d.serving(t)
	d.waitLog(t, `"msg":"serving self-service"`, 30*time.Second)
	waitOwnCalls(t, g, aliceID, []string{"set"})

	// alice: pause, then resume.
	g.SignInAs(aliceID, "alice@contoso.com", g.TenantID())
	alice, page := browse(t, g, url)
	if !strings.Contains(page, "Not paused") {
		t.Fatalf("alice's page does not say she is not paused:\n%s", page)
	}
	csrf := testutil.FormValue(t, page, "csrf")
	if status, page := testutil.PostForm(t, alice, url, "/pause", neturl.Values{"csrf": {csrf}}); status != http.StatusOK || !strings.Contains(page, "Paused until you resume") {
		t.Errorf("POST /pause, then the page = %d; want 200 saying paused until you resume\n%s", status, page)
	}
	waitOwnCalls(t, g, aliceID, []string{"set", "clear"})
	if status, page := testutil.PostForm(t, alice, url, "/resume", neturl.Values{"csrf": {csrf}}); status != http.StatusOK || !strings.Contains(page, "Not paused") {
		t.Errorf("POST /resume, then the page = %d; want 200, not paused\n%s", status, page)
	}
	waitOwnCalls(t, g, aliceID, []string{"set", "clear", "set"})

	// bob: a 15-minute call, ended early. He is known once the engine
	// resolved his address; until then the page refuses him.
	g.SignInAs(bobID, "bob@contoso.com", g.TenantID())
	var bob *http.Client
	if !testutil.WaitUntil(20*time.Second, func() bool {
		var status int
		bob, page, status = browseStatus(t, g, url)
		return status == http.StatusOK
	}) {
		t.Fatalf("bob's page did not answer 200 within 20s:\n%s", page)
	}
	csrf = testutil.FormValue(t, page, "csrf")
	if status, page := testutil.PostForm(t, bob, url, "/call", neturl.Values{"csrf": {csrf}, "minutes": {"15"}}); status != http.StatusOK || !strings.Contains(page, `id="on-call"`) {
		t.Errorf("POST /call minutes=15, then the page = %d; want 200 saying he is on a call\n%s", status, page)
	}
	calls := waitOwnCalls(t, g, bobID, []string{"set"})
	if set := calls[0]; set.Availability != "Busy" || set.Activity != "InACall" {
		t.Errorf("bob's set = %s/%s; want Busy/InACall", set.Availability, set.Activity)
	}
	if status, _ := testutil.PostForm(t, bob, url, "/call/end", neturl.Values{"csrf": {csrf}}); status != http.StatusOK {
		t.Errorf("POST /call/end, then the page = %d; want 200", status)
	}
	waitOwnCalls(t, g, bobID, []string{"set", "clear"})

	// A POST from another origin changes nothing.
	req, _ := http.NewRequest(http.MethodPost, url+"/call", strings.NewReader(neturl.Values{"csrf": {csrf}, "minutes": {"15"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if resp, err := bob.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST /call from another origin = %d; want 403", resp.StatusCode)
		}
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon exit after SIGTERM: %v; want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("daemon did not stop within 15s of SIGTERM")
	}
	if got := ownCalls(g, bobID); !slices.Equal(got, []string{"set", "clear"}) {
		t.Errorf("bob's calls at the end = %v; want set, clear (the refused POST changed nothing)", got)
	}
	if strings.Contains(d.log(), string(gc.ClientSecret)) {
		t.Error("the client secret shows in the logs")
	}
}

// icsMeeting is a feed with one meeting.
func icsMeeting(uid string, start, end time.Time) string {
	return fmt.Sprintf("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//e2e//EN\r\nBEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20260101T000000Z\r\n"+
		"DTSTART:%s\r\nDTEND:%s\r\nSUMMARY:%s\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		uid, start.UTC().Format("20060102T150405Z"), end.UTC().Format("20060102T150405Z"), uid)
}

// ownCalls are the fake's successful presence calls for user, "set" or
// "clear".
func ownCalls(g *graphtest.Server, user string) []string {
	var out []string
	for _, c := range selfCalls(g, user) {
		if c.Op == graphtest.OpSetPresence {
			out = append(out, "set")
		} else {
			out = append(out, "clear")
		}
	}
	return out
}

func selfCalls(g *graphtest.Server, user string) []graphtest.Call {
	var out []graphtest.Call
	for _, c := range g.PresenceCalls() {
		if c.User == user && c.Status < 300 {
			out = append(out, c)
		}
	}
	return out
}

// waitOwnCalls waits until user's successful presence calls are want, and
// returns them.
func waitOwnCalls(t *testing.T, g *graphtest.Server, user string, want []string) []graphtest.Call {
	t.Helper()
	if !testutil.WaitUntil(20*time.Second, func() bool { return slices.Equal(ownCalls(g, user), want) }) {
		t.Fatalf("%s's presence calls = %v; want %v", user, ownCalls(g, user), want)
	}
	return selfCalls(g, user)
}

// browse signs in at url as the person the fake signs in now, with a
// fresh cookie jar following the redirects through the fake authority,
// and returns the browser and the page; anything but 200 fails.
func browse(t *testing.T, g *graphtest.Server, url string) (*http.Client, string) {
	t.Helper()
	c, page, status := browseStatus(t, g, url)
	if status != http.StatusOK {
		t.Fatalf("GET / through the sign-in = %d; want 200\n%s", status, page)
	}
	return c, page
}

func browseStatus(t *testing.T, g *graphtest.Server, url string) (*http.Client, string, int) {
	t.Helper()
	c := testutil.Browser(g.HTTPClient().Transport)
	status, page := testutil.Get(t, c, url+"/")
	return c, page, status
}
