package app

import (
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/internal/testutil"
)

// TestStandbyPagePause: with two replicas on PostgreSQL, alice signs in on
// the standby's page (it knows her from the addresses the leader resolved
// and stored) and pauses: the standby stores the pause, and the leader
// clears her within a few seconds; she resumes there and is set again.
func TestStandbyPagePause(t *testing.T) {
	dsn := pgtest.DB(t)
	g := graphtest.NewServer(t, graphtest.WithUsers(
		graphtest.User{ID: aliceID, UserPrincipalName: "alice@contoso.com", Mail: "alice@contoso.com"},
		graphtest.User{ID: bobID, UserPrincipalName: "bob@contoso.com", Mail: "bob@contoso.com"}))
	key := filepath.Join(t.TempDir(), "cookie")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	replicaCfg := func() (*config.Config, string) {
		cfg := replicaConfig(t, dsn)
		gc := g.Config()
		cfg.Graph.TenantID, cfg.Graph.ClientID, cfg.Graph.ClientSecret = gc.TenantID, gc.ClientID, gc.ClientSecret
		cfg.Graph.Endpoint, cfg.Graph.AuthorityHost, cfg.Graph.CAFile = gc.Endpoint, gc.AuthorityHost, gc.CAFile
		addr := freeAddr(t)
		cfg.Selfservice.Listen, cfg.Selfservice.URL, cfg.Selfservice.CookieKeyFile = addr, "http://"+addr, key
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		g.AddRedirectURI(cfg.Selfservice.URL + "/auth/callback")
		return cfg, cfg.Selfservice.URL
	}
	now := time.Now().Truncate(time.Second)
	feeds := twoFeeds(meeting("alice-running", now.Add(-time.Minute), now.Add(time.Hour)),
		meeting("bob-later", now.Add(3*time.Hour), now.Add(4*time.Hour)))
	cfg1, _ := replicaCfg()
	r1 := startReplica(t, cfg1, "r1", feeds, nil)
	if !testutil.WaitUntil(20*time.Second, func() bool {
		return r1.role(t) == "leader" && slices.Equal(selfPresenceCalls(g, aliceID), []string{"set"})
	}) {
		t.Fatalf("r1 is %q, alice's calls %v; want r1 leading and alice set", r1.role(t), selfPresenceCalls(g, aliceID))
	}
	cfg2, url2 := replicaCfg()
	r2 := startReplica(t, cfg2, "r2", feeds, nil)
	if !testutil.WaitUntil(10*time.Second, func() bool { return r2.role(t) == "standby" }) {
		t.Fatalf("r2 is %q; want standby", r2.role(t))
	}

	g.SignInAs(aliceID, "alice@contoso.com", g.TenantID())
	status, page, c := signInClient(t, g, url2)
	if status != http.StatusOK || !strings.Contains(page, "This server stands by") || !strings.Contains(page, "Not paused") {
		t.Fatalf("alice's page on the standby = %d; want 200 saying it stands by, and that she is not paused\n%s", status, page)
	}
	csrf := testutil.FormValue(t, page, "csrf")
	if status, page := testutil.PostForm(t, c, url2, "/pause", neturl.Values{"csrf": {csrf}}); status != http.StatusOK || !strings.Contains(page, "Paused until you resume") {
		t.Fatalf("POST /pause on the standby = %d; want 200 after the redirect, saying she is paused\n%s", status, page)
	}
	if !testutil.WaitUntil(10*time.Second, func() bool { return slices.Equal(selfPresenceCalls(g, aliceID), []string{"set", "clear"}) }) {
		t.Fatalf("alice's calls after her pause on the standby = %v; want set, clear", selfPresenceCalls(g, aliceID))
	}
	if status, page := testutil.PostForm(t, c, url2, "/resume", neturl.Values{"csrf": {csrf}}); status != http.StatusOK {
		t.Fatalf("POST /resume on the standby = %d\n%s", status, page)
	}
	if !testutil.WaitUntil(10*time.Second, func() bool {
		return slices.Equal(selfPresenceCalls(g, aliceID), []string{"set", "clear", "set"})
	}) {
		t.Fatalf("alice's calls after she resumed on the standby = %v; want set, clear, set", selfPresenceCalls(g, aliceID))
	}
}
