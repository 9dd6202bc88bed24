package app

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/engine"
)

// byURL serves feeds by URL (the own feeds' source names are random), and
// the configured sources by name as testutil.Feeds does.
type byURL struct {
	*testutil.Feeds
	mu   sync.Mutex
	urls map[string][]byte
}

func (f *byURL) Fetch(ctx context.Context, req sources.FetchRequest) (sources.FetchResult, error) {
	f.mu.Lock()
	body, ok := f.urls[req.URL]
	f.mu.Unlock()
	if !ok {
		return f.Feeds.Fetch(ctx, req)
	}
	return sources.FetchResult{Body: body, Status: 200}, nil
}

// TestSelfserviceFeeds: with selfservice.feeds, bob adds his own feed
// (a webcal:// link, taken as https): it is read before it is accepted,
// stored sealed (the store never holds the URL), shown to him redacted,
// polled for him alone (his meeting in it sets him), counted on the
// status view without being listed as a source; alice's page shows none
// of it. A feed without a calendar, a sixth feed and the same feed twice
// are refused with the reason. Removed, it is dropped and bob cleared.
func TestSelfserviceFeeds(t *testing.T) {
	g := aliceAndBob(t)
	now := time.Now().Truncate(time.Second)
	const own = "https://calendar.example.test/ical/bob%40example.com/private-0a1b2c3d4e5f6a7b8c9d/basic.ics"
	feeds := &byURL{Feeds: twoFeeds(meeting("alice-later", now.Add(3*time.Hour), now.Add(4*time.Hour)), meeting("bob-later", now.Add(3*time.Hour), now.Add(4*time.Hour))),
		urls: map[string][]byte{
			own:                                    meeting("bob-own-running", now.Add(-time.Minute), now.Add(time.Hour)),
			"https://calendar.example.test/a.html": []byte("<html><body>Sign in to see this calendar</body></html>"),
		}}
	for i := 2; i <= 5; i++ {
		feeds.urls[fmt.Sprintf("https://calendar.example.test/%d.ics", i)] = meeting(fmt.Sprintf("extra-%d", i), now.Add(20*time.Hour), now.Add(21*time.Hour))
	}
	a, url := selfserviceDaemon(t, g, feeds, func(c *config.Config) { c.Selfservice.Feeds = true })
	waitKnown(t, a, bobID, "bob")
	g.SignInAs(bobID, "bob@contoso.com", g.TenantID())
	_, page, c := signInClient(t, g, url)
	csrf := testutil.FormValue(t, page, "csrf")
	if status, page := testutil.PostForm(t, c, url, "/feeds", neturl.Values{"csrf": {csrf}, "url": {"https://calendar.example.test/a.html"}}); status != http.StatusBadRequest || !strings.Contains(page, "could not be used") {
		t.Errorf("POST /feeds of an HTML page = %d; want 400 saying it could not be used\n%s", status, page)
	}
	status, page := testutil.PostForm(t, c, url, "/feeds", neturl.Values{"csrf": {csrf}, "url": {"webcal" + strings.TrimPrefix(own, "https")}})
	if status != http.StatusOK || !strings.Contains(page, "https://calendar.example.test/ical/bob%40example.com/private-&lt;redacted&gt;/basic.ics") {
		t.Fatalf("POST /feeds, then the page = %d; want 200 listing the feed redacted\n%s", status, page)
	}
	if strings.Contains(page, "0a1b2c3d4e5f6a7b8c9d") {
		t.Errorf("bob's page shows the feed's secret:\n%s", page)
	}
	stored, err := a.store.OwnFeeds(t.Context())
	if err != nil || len(stored) != 1 {
		t.Fatalf("stored own feeds = %v, %v; want one", stored, err)
	}
	var id string
	for k, f := range stored {
		id = k
		if f.Person != bobID || bytes.Contains(f.Sealed, []byte("0a1b2c3d4e5f6a7b8c9d")) || bytes.Contains(f.Sealed, []byte("calendar.example")) {
			t.Errorf("stored feed = %+v; want bob's, its URL sealed", f)
		}
	}
	if !testutil.WaitUntil(10*time.Second, func() bool { return slices.Equal(selfPresenceCalls(g, bobID), []string{"set"}) }) {
		t.Fatalf("bob's calls = %v; want a set for the meeting in his own feed", selfPresenceCalls(g, bobID))
	}
	st := a.Engine().Status(t.Context(), time.Now())
	if len(st.OwnFeeds) != 1 || st.OwnFeeds[0].User != "bob@contoso.com" || st.OwnFeeds[0].Feeds != 1 {
		t.Errorf("Status().OwnFeeds = %+v; want bob with one", st.OwnFeeds)
	}
	for _, s := range st.Sources {
		if strings.HasPrefix(s.Name, engine.OwnFeedPrefix) {
			t.Errorf("Status().Sources lists an own feed: %+v", s)
		}
	}
	if status, page := testutil.PostForm(t, c, url, "/feeds", neturl.Values{"csrf": {csrf}, "url": {own}}); status != http.StatusBadRequest || !strings.Contains(page, "already") {
		t.Errorf("POST /feeds of the same feed again = %d; want 400 already added\n%s", status, page)
	}
	// Four more, as another replica's page would have stored them (the
	// page allows a person 6 changes a minute).
	for i := 2; i <= 5; i++ {
		f := a.feedKey.Seal(state.OwnFeed{ID: fmt.Sprintf("extra%d", i), Person: bobID, Address: "bob@contoso.com", Added: time.Now()},
			fmt.Sprintf("https://calendar.example.test/%d.ics", i))
		if err := a.store.PutOwnFeed(t.Context(), f); err != nil {
			t.Fatal(err)
		}
	}
	if status, page := testutil.PostForm(t, c, url, "/feeds", neturl.Values{"csrf": {csrf}, "url": {"https://calendar.example.test/6.ics"}}); status != http.StatusBadRequest || !strings.Contains(page, "the most a person may have") {
		t.Errorf("POST /feeds, a sixth = %d; want 400 at most\n%s", status, page)
	}

	g.SignInAs(aliceID, "alice@contoso.com", g.TenantID())
	if status, page := signIn(t, g, url); status != http.StatusOK || strings.Contains(page, "calendar.example") || !strings.Contains(page, "None yet") {
		t.Errorf("alice's page = %d; want 200 without bob's feeds\n%s", status, page)
	}

	if status, page := testutil.PostForm(t, c, url, "/feeds/delete", neturl.Values{"csrf": {csrf}, "id": {id}}); status != http.StatusOK || strings.Contains(page, "bob%40example.com") {
		t.Errorf("POST /feeds/delete, then the page = %d; want 200 without the feed\n%s", status, page)
	}
	if !testutil.WaitUntil(10*time.Second, func() bool { return slices.Equal(selfPresenceCalls(g, bobID), []string{"set", "clear"}) }) {
		t.Fatalf("bob's calls after removing his feed = %v; want set, clear", selfPresenceCalls(g, bobID))
	}
}

// TestSelfserviceFeedsPublicOnly: with the daemon's own fetcher and
// selfservice.private_feeds off, a feed on loopback is refused before any
// connection (even over https), and an http:// feed is refused for its
// scheme; nothing is stored.
func TestSelfserviceFeedsPublicOnly(t *testing.T) {
	g := graphtest.NewServer(t, graphtest.WithUsers(
		graphtest.User{ID: bobID, UserPrincipalName: "bob@contoso.com", Mail: "bob@contoso.com"}))
	var hits atomic.Int32
	feed := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(feed.Close)
	// The configured sources, on loopback, which they may reach.
	configured := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(meeting("later", time.Now().Add(3*time.Hour), time.Now().Add(4*time.Hour)))
	}))
	t.Cleanup(configured.Close)
	a, url := selfserviceDaemon(t, g, nil, func(c *config.Config) {
		c.Selfservice.Feeds = true
		for i := range c.Sources {
			c.Sources[i].URL = configured.URL + "/" + c.Sources[i].Name + ".ics"
		}
	})
	waitKnown(t, a, bobID, "bob")
	g.SignInAs(bobID, "bob@contoso.com", g.TenantID())
	_, page, c := signInClient(t, g, url)
	csrf := testutil.FormValue(t, page, "csrf")
	for u, want := range map[string]string{
		feed.URL + "/bob.ics":                               "loopback",
		strings.Replace(feed.URL, "https", "http", 1) + "/": "must begin with https://",
		"https://localhost/bob.ics":                         "loopback",
	} {
		if status, page := testutil.PostForm(t, c, url, "/feeds", neturl.Values{"csrf": {csrf}, "url": {u}}); status != http.StatusBadRequest || !strings.Contains(page, want) {
			t.Errorf("POST /feeds %s = %d; want 400 saying %q\n%s", u, status, want, page)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the loopback feed was requested %d times; want none", n)
	}
	if stored, err := a.store.OwnFeeds(t.Context()); err != nil || len(stored) != 0 {
		t.Errorf("stored own feeds = %v, %v; want none", stored, err)
	}
}
