package selfservice_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/selfservice"
)

// feedPeople is people with own feeds: a feed whose URL contains
// "nocalendar" is refused as the app refuses one that holds no calendar.
type feedPeople struct {
	*people
	mu    sync.Mutex
	feeds map[string][]selfservice.Feed // oid → feeds
	next  int
	err   error // what AddFeed and DeleteFeed answer
}

func (p *feedPeople) View(ctx context.Context, oid string) (selfservice.View, error) {
	v, err := p.people.View(ctx, oid)
	p.mu.Lock()
	defer p.mu.Unlock()
	v.Feeds = p.feeds[oid]
	return v, err
}

func (p *feedPeople) AddFeed(_ context.Context, oid, upn, raw string) (selfservice.FeedAdded, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return selfservice.FeedAdded{}, p.err
	}
	if strings.Contains(raw, "nocalendar") {
		return selfservice.FeedAdded{}, &selfservice.FeedRefusal{Reason: "The feed could not be used: not a calendar (no BEGIN:VCALENDAR)."}
	}
	p.next++
	f := selfservice.Feed{ID: "f" + string(rune('0'+p.next)), Shown: strings.Split(raw, "?")[0] + "?<redacted>", Added: time.Now()}
	p.feeds[oid] = append(p.feeds[oid], f)
	return selfservice.FeedAdded{ID: f.ID, Shown: f.Shown}, nil
}

func (p *feedPeople) DeleteFeed(_ context.Context, oid, id string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return false, p.err
	}
	for i, f := range p.feeds[oid] {
		if f.ID == id {
			p.feeds[oid] = append(p.feeds[oid][:i], p.feeds[oid][i+1:]...)
			return true, nil
		}
	}
	return false, nil
}

// TestFeeds: with selfservice.feeds, the page offers "Add feed"; a feed
// is added (303 to the page, which lists it redacted, never the secret)
// and removed; an empty URL and a feed the worker refuses are 400 with
// the reason and a link back; removing an id that is not theirs is 404;
// a store that cannot record is 503; without the CSRF token, 403. With
// selfservice.feeds off, the page offers nothing and the POSTs are 404.
func TestFeeds(t *testing.T) {
	fp := &feedPeople{people: newPeople(map[string]selfservice.View{aliceOID: aliceView}), feeds: map[string][]selfservice.Feed{}}
	e := newEnvWith(t, "", fp, func(_ *graphtest.Server, c *selfservice.Config) { c.Feeds = true })
	b := e.browser(t)
	page := e.signIn(b)
	wantPage(t, "GET / with feeds on", page, http.StatusOK, `id="add-feed"`)
	csrf := csrfOf(t, page.body)
	const secret = "https://calendar.example/ical/private-s3cr3tt0k3n/basic.ics?token=s3cr3t"

	for _, c := range []struct {
		name   string
		form   url.Values
		status int
		text   string
	}{
		{"no url", url.Values{"csrf": {csrf}, "url": {" "}}, http.StatusBadRequest, "Paste the address"},
		{"no calendar", url.Values{"csrf": {csrf}, "url": {"https://example.com/nocalendar"}}, http.StatusBadRequest, "not a calendar"},
		{"no csrf", url.Values{"url": {secret}}, http.StatusForbidden, "CSRF"},
	} {
		a := b.post(e.srv.URL+"/feeds", e.srv.URL, c.form)
		wantPage(t, "POST /feeds: "+c.name, a, c.status, c.text)
		if c.status == http.StatusBadRequest && !strings.Contains(a.body, "Back to your page") {
			t.Errorf("POST /feeds (%s): the refusal has no link back:\n%s", c.name, a.body)
		}
	}
	if len(fp.feeds[aliceOID]) != 0 {
		t.Fatalf("refused feeds were added: %+v", fp.feeds[aliceOID])
	}

	a := b.post(e.srv.URL+"/feeds", e.srv.URL, url.Values{"csrf": {csrf}, "url": {secret}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Fatalf("POST /feeds = %d (Location %q); want 303 to /\n%s", a.status, a.header.Get("Location"), a.body)
	}
	page = b.get(e.srv.URL + "/")
	wantPage(t, "GET / with a feed", page, http.StatusOK, "https://calendar.example/ical/private-s3cr3tt0k3n/basic.ics?&lt;redacted&gt;")
	if strings.Contains(page.body, "token=s3cr3t") {
		t.Errorf("the page shows the feed's secret:\n%s", page.body)
	}

	wantPage(t, "POST /feeds/delete of another's id", b.post(e.srv.URL+"/feeds/delete", e.srv.URL, url.Values{"csrf": {csrf}, "id": {"bob-feed"}}),
		http.StatusNotFound, "You have no feed")
	fp.mu.Lock()
	fp.err = errors.New("store down")
	fp.mu.Unlock()
	wantPage(t, "POST /feeds, store down", b.post(e.srv.URL+"/feeds", e.srv.URL, url.Values{"csrf": {csrf}, "url": {secret}}),
		http.StatusServiceUnavailable, "could not record it")
	fp.mu.Lock()
	fp.err = nil
	fp.mu.Unlock()
	if a := b.post(e.srv.URL+"/feeds/delete", e.srv.URL, url.Values{"csrf": {csrf}, "id": {"f1"}}); a.status != http.StatusSeeOther {
		t.Fatalf("POST /feeds/delete = %d; want 303\n%s", a.status, a.body)
	}
	wantPage(t, "GET / after the delete", b.get(e.srv.URL+"/"), http.StatusOK, "None yet")

	// Off: nothing offered, nothing taken.
	off := newEnvWith(t, "", fp, nil)
	ob := off.browser(t)
	page = off.signIn(ob)
	if strings.Contains(page.body, "add-feed") || strings.Contains(page.body, "Your feeds") {
		t.Errorf("with feeds off the page offers feeds:\n%s", page.body)
	}
	wantPage(t, "POST /feeds with feeds off", ob.post(off.srv.URL+"/feeds", off.srv.URL, url.Values{"csrf": {csrfOf(t, page.body)}, "url": {secret}}),
		http.StatusNotFound, "not turned on")
}
