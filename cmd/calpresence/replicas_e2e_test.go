package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/sync/engine"
)

const bobID = "7f4a8b3d-2c0e-4d6f-9a11-1b2c3d4e5f60"

// TestRunReplicasTakeOverAfterKill runs two daemons sharing one PostgreSQL
// database (state.driver postgres), the same configuration but for
// server.listen. One leads; it is killed with SIGKILL while bob is in a
// meeting that ends ~20 s later, and alice's starts ~10 s after the kill.
// The other must lead within 15 s of the kill, set alice at her start and
// clear bob at his end, and never set bob again: the session the first
// recorded in the database is its own.
func TestRunReplicasTakeOverAfterKill(t *testing.T) {
	dsn := pgtest.DB(t)
	g := graphtest.NewServer(t, graphtest.WithUsers(
		graphtest.User{ID: aliceID, UserPrincipalName: "alice@contoso.com", Mail: "alice@contoso.com"},
		graphtest.User{ID: bobID, UserPrincipalName: "bob@contoso.com", Mail: "bob@contoso.com"}))

	// The kill comes ~12 s after the start (two daemons start, one wins the
	// lock and acts 3 s later, sets bob); the meetings are placed around it.
	base := time.Now().Truncate(time.Second)
	killAt := base.Add(12 * time.Second)
	bobStart, bobEnd := base.Add(-10*time.Minute), killAt.Add(20*time.Second)
	aliceStart, aliceEnd := killAt.Add(10*time.Second), killAt.Add(10*time.Minute)
	vevent := func(uid string, start, end time.Time) string {
		return fmt.Sprintf("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//e2e//EN\r\nBEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20260101T000000Z\r\n"+
			"DTSTART:%s\r\nDTEND:%s\r\nSUMMARY:Zoom call\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
			uid, start.UTC().Format("20060102T150405Z"), end.UTC().Format("20060102T150405Z"))
	}
	feeds := map[string]string{"/alice.ics": vevent("alice-1", aliceStart, aliceEnd), "/bob.ics": vevent("bob-1", bobStart, bobEnd)}
	feedSrv := serveFeeds(t, feeds)

	dir := t.TempDir()
	gc := g.Config()
	t.Setenv("E2E_SECRET", string(gc.ClientSecret))
	t.Setenv("E2E_DSN", dsn)
	daemons := make([]*daemon, 2)
	addrs := make([]string, 2)
	for i := range daemons {
		cfg := fmt.Sprintf(`graph:
  tenant_id: %s
  client_id: %s
  client_secret: ${E2E_SECRET}
  endpoint: %s
  authority_host: %s
  ca_file: %s
schedule:
  poll_interval: 1s
state:
  driver: postgres
  dsn: ${E2E_DSN}
server:
  listen: "%s"
sources:
  - name: alice
    url: %s/alice.ics
    users: [alice@contoso.com]
  - name: bob
    url: %s/bob.ics
    users: [bob@contoso.com]
`, gc.TenantID, gc.ClientID, gc.Endpoint, gc.AuthorityHost, gc.CAFile, freeAddr(t), feedSrv.URL, feedSrv.URL)
		path := filepath.Join(dir, fmt.Sprintf("config-%d.yaml", i))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		daemons[i] = startDaemon(t, path)
	}
	for i, d := range daemons {
		addrs[i] = d.serving(t)
	}
	readyz := func(i int) (int, engine.Readiness) {
		resp, err := http.Get("http://" + addrs[i] + "/readyz")
		if err != nil {
			return 0, engine.Readiness{}
		}
		defer resp.Body.Close()
		var r engine.Readiness
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode, r
	}

	// One leads, the other stands by; only the leader sets bob.
	lead := -1
	if !testutil.WaitUntil(15*time.Second, func() bool {
		for i := range daemons {
			if _, r := readyz(i); r.Role == "leader" {
				lead = i
			}
		}
		return lead >= 0
	}) {
		t.Fatal("no daemon leads 15s after both started")
	}
	standby := 1 - lead
	leader, other := daemons[lead], daemons[standby]
	waitCalls(t, g, 1, 15*time.Second)
	leader.waitLog(t, `"msg":"presence set"`, 10*time.Second)
	_, lr := readyz(lead)
	var code int
	var sr engine.Readiness
	if !testutil.WaitUntil(10*time.Second, func() bool { code, sr = readyz(standby); return code == 200 }) ||
		sr.Role != "standby" || sr.Replica == nil || lr.Replica == nil || sr.Replica.Leader != lr.Replica.ID {
		t.Fatalf("standby's /readyz = %d, role %q, replica %+v; want 200, standby, naming the leader %+v", code, sr.Role, sr.Replica, lr.Replica)
	}
	if strings.Contains(other.log(), `"msg":"presence set"`) {
		t.Error("the standby set presence")
	}
	if wait := time.Until(killAt); wait > 0 {
		time.Sleep(wait)
	} else if time.Until(aliceStart) < 8*time.Second {
		t.Fatalf("the leader took until %v after the start to set bob: too late for the rest of the test",
			time.Since(base).Round(time.Millisecond))
	}

	// SIGKILL: no clean-up, the kernel closes its sockets.
	killed := time.Now()
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-leader.done
	if !testutil.WaitUntil(15*time.Second-time.Since(killed), func() bool { _, r := readyz(standby); return r.Role == "leader" }) {
		_, r := readyz(standby)
		t.Fatalf("the standby does not lead 15s after the leader was killed: role %q, replica %+v, reasons %q", r.Role, r.Replica, r.Reasons)
	}
	t.Logf("the standby leads %v after the leader was killed", time.Since(killed).Round(time.Millisecond))

	// alice set at her start, bob cleared at his end, and nothing else.
	waitCalls(t, g, 3, time.Until(bobEnd)+15*time.Second)
	time.Sleep(3 * time.Second) // a repeat would come within a poll or two
	calls := g.PresenceCalls()
	sets, clears := map[string]int{}, map[string]int{}
	for _, c := range calls {
		if c.SessionID != gc.ClientID || c.Status != 200 {
			t.Errorf("call %s %s: session %q, status %d; want session %q, 200", c.Op, c.User, c.SessionID, c.Status, gc.ClientID)
		}
		switch c.Op {
		case graphtest.OpSetPresence:
			sets[c.User]++
			if c.User == aliceID && c.Time.Before(aliceStart) {
				t.Errorf("alice set at %s, before her start %s", c.Time.Format(time.StampMilli), aliceStart.Format(time.Stamp))
			}
			if c.User == bobID && c.Time.After(killed) {
				t.Errorf("bob set again at %s, after the kill", c.Time.Format(time.StampMilli))
			}
		case graphtest.OpClearPresence:
			clears[c.User]++
			if c.User == bobID && c.Time.Before(bobEnd) {
				t.Errorf("bob cleared at %s, before his end %s", c.Time.Format(time.StampMilli), bobEnd.Format(time.Stamp))
			}
		}
	}
	if len(calls) != 3 || sets[bobID] != 1 || sets[aliceID] != 1 || clears[bobID] != 1 {
		t.Errorf("presence calls = %d (sets %v, clears %v); want bob set once (before the kill), alice set once, bob cleared once", len(calls), sets, clears)
	}
	if !strings.Contains(other.log(), `"msg":"this replica leads: the engine starts"`) {
		t.Error("the standby never logged that it leads")
	}
}

// serveFeeds serves each of feeds (path → ICS body) on a loopback server
// until the test ends; any other path is 404.
func serveFeeds(t *testing.T, feeds map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := feeds[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/calendar")
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}
