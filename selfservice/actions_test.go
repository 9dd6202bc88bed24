package selfservice_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestPause: the page's forms pause (for an hour, or until resumed) and
// resume; the page then says so. A bad until is refused with 400 naming
// the format, one in the past too; a POST without the CSRF token or from
// another origin is 403; a pause the worker cannot record is 503. None of
// those changes anything.
func TestPause(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	page := e.signIn(b)
	wantPage(t, "GET / signed in", page, http.StatusOK, "Not paused")
	csrf := csrfOf(t, page.body)
	const marker = `name="until" value="`
	i := strings.Index(page.body, marker)
	if i < 0 {
		t.Fatalf("no until in the pause-for-an-hour form:\n%s", page.body)
	}
	hour := page.body[i+len(marker):]
	hour = hour[:strings.IndexByte(hour, '"')]
	until, err := time.Parse(time.RFC3339, hour)
	if err != nil || until.Sub(time.Now()) < 59*time.Minute || until.Sub(time.Now()) > 61*time.Minute {
		t.Fatalf("pause-for-an-hour until = %q (%v); want an RFC 3339 time an hour from now", hour, err)
	}

	for _, c := range []struct {
		name, origin string
		form         url.Values
		status       int
		text         string
	}{
		{"until not RFC 3339", e.srv.URL, url.Values{"csrf": {csrf}, "until": {"tomorrow"}}, http.StatusBadRequest, "RFC 3339"},
		{"until in the past", e.srv.URL, url.Values{"csrf": {csrf}, "until": {time.Now().Add(-time.Minute).Format(time.RFC3339)}}, http.StatusBadRequest, "must be in the future"},
		{"no csrf", e.srv.URL, url.Values{"until": {hour}}, http.StatusForbidden, "CSRF"},
		{"another origin", "https://evil.example", url.Values{"csrf": {csrf}}, http.StatusForbidden, "another site"},
	} {
		a := b.post(e.srv.URL+"/pause", c.origin, c.form)
		wantPage(t, "POST /pause: "+c.name, a, c.status, c.text)
		if v := e.people.view(aliceOID); v.Paused {
			t.Fatalf("POST /pause (%s) paused alice", c.name)
		}
	}

	a := b.post(e.srv.URL+"/pause", e.srv.URL, url.Values{"csrf": {csrf}, "until": {hour}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Fatalf("POST /pause = %d (Location %q); want 303 to /\n%s", a.status, a.header.Get("Location"), a.body)
	}
	if v := e.people.view(aliceOID); !v.Paused || !v.PausedUntil.Equal(until) {
		t.Errorf("after POST /pause: Paused %v until %v; want paused until %v", v.Paused, v.PausedUntil, until)
	}
	page = b.get(e.srv.URL + "/")
	wantPage(t, "GET / paused for an hour", page, http.StatusOK, `datetime="`+until.UTC().Format(time.RFC3339)+`"`)
	if !strings.Contains(page.body, `id="resume"`) || strings.Contains(page.body, `id="pause"`) {
		t.Errorf("the page of a paused person offers no Resume, or offers Pause:\n%s", page.body)
	}

	a = b.post(e.srv.URL+"/resume", e.srv.URL, url.Values{"csrf": {csrf}})
	if a.status != http.StatusSeeOther {
		t.Fatalf("POST /resume = %d; want 303\n%s", a.status, a.body)
	}
	if v := e.people.view(aliceOID); v.Paused {
		t.Errorf("after POST /resume: still paused")
	}

	// Until resumed: no until.
	if a := b.post(e.srv.URL+"/pause", e.srv.URL, url.Values{"csrf": {csrf}}); a.status != http.StatusSeeOther {
		t.Fatalf("POST /pause without until = %d; want 303\n%s", a.status, a.body)
	}
	if v := e.people.view(aliceOID); !v.Paused || !v.PausedUntil.IsZero() {
		t.Errorf("after POST /pause without until: Paused %v until %v; want paused until resumed", v.Paused, v.PausedUntil)
	}
	wantPage(t, "GET / paused until resumed", b.get(e.srv.URL+"/"), http.StatusOK, "Paused until you resume")

	e.people.mu.Lock()
	e.people.err = errors.New("store down")
	e.people.mu.Unlock()
	wantPage(t, "POST /resume, store down", b.post(e.srv.URL+"/resume", e.srv.URL, url.Values{"csrf": {csrf}}),
		http.StatusServiceUnavailable, "You are still paused")
}

func (p *people) StartCall(_ context.Context, oid string, until time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	v := p.views[oid]
	v.OnCallUntil = until
	p.views[oid] = v
	return nil
}

func (p *people) EndCall(_ context.Context, oid string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	v := p.views[oid]
	v.OnCallUntil = time.Time{}
	p.views[oid] = v
	return nil
}

// TestCall: "I'm on a call" for minutes within 5 … max_call (4h by
// default) is recorded until now+minutes and shown; other minutes are
// refused with 400 naming the limits; the call ends early on
// POST /call/end. A person's seventh change within a minute is refused
// with 429, and allowed again a minute later.
func TestCall(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	page := e.signIn(b)
	csrf := csrfOf(t, page.body)
	for _, want := range []string{`<option value="5">`, `<option value="240">`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the page's call form lacks %s:\n%s", want, page.body)
		}
	}
	for _, m := range []string{"4", "241", "", "half an hour"} {
		a := b.post(e.srv.URL+"/call", e.srv.URL, url.Values{"csrf": {csrf}, "minutes": {m}})
		wantPage(t, "POST /call minutes="+m, a, http.StatusBadRequest, "from 5 to 240 (selfservice.max_call is 4h0m0s)")
	}
	if v := e.people.view(aliceOID); !v.OnCallUntil.IsZero() {
		t.Fatalf("a refused call was recorded: until %v", v.OnCallUntil)
	}

	before := time.Now()
	a := b.post(e.srv.URL+"/call", e.srv.URL, url.Values{"csrf": {csrf}, "minutes": {"30"}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Fatalf("POST /call minutes=30 = %d; want 303 to /\n%s", a.status, a.body)
	}
	until := e.people.view(aliceOID).OnCallUntil
	if d := until.Sub(before); d < 30*time.Minute || d > 30*time.Minute+5*time.Second {
		t.Errorf("call until %v, %v after the request; want 30m", until, d)
	}
	wantPage(t, "GET / on a call", b.get(e.srv.URL+"/"), http.StatusOK, `id="call-end"`)

	// Six changes a minute: the four refused calls counted too.
	a = b.post(e.srv.URL+"/call/end", e.srv.URL, url.Values{"csrf": {csrf}})
	if a.status != http.StatusSeeOther || !e.people.view(aliceOID).OnCallUntil.IsZero() {
		t.Fatalf("POST /call/end = %d, call until %v; want 303 and no call", a.status, e.people.view(aliceOID).OnCallUntil)
	}
	a = b.post(e.srv.URL+"/call", e.srv.URL, url.Values{"csrf": {csrf}, "minutes": {"5"}})
	wantPage(t, "the seventh change in a minute", a, http.StatusTooManyRequests, "At most 6 changes a minute")
	if a.header.Get("Retry-After") == "" || !e.people.view(aliceOID).OnCallUntil.IsZero() {
		t.Errorf("429 with Retry-After %q, call until %v; want a Retry-After and nothing changed", a.header.Get("Retry-After"), e.people.view(aliceOID).OnCallUntil)
	}
	e.now.Advance(time.Minute)
	if a := b.post(e.srv.URL+"/call", e.srv.URL, url.Values{"csrf": {csrf}, "minutes": {"5"}}); a.status != http.StatusSeeOther {
		t.Errorf("POST /call a minute later = %d; want 303\n%s", a.status, a.body)
	}
}

// TestCallWhilePaused: a paused person's call sets nothing, and the page
// says so: next to the call form while paused, and after POST /call
// (which sends them to /?call=paused). Once resumed, neither note shows.
func TestCallWhilePaused(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	page := e.signIn(b)
	csrf := csrfOf(t, page.body)
	if strings.Contains(page.body, `id="call-paused"`) {
		t.Errorf("the page warns of a pause before one:\n%s", page.body)
	}
	if a := b.post(e.srv.URL+"/pause", e.srv.URL, url.Values{"csrf": {csrf}}); a.status != http.StatusSeeOther {
		t.Fatalf("POST /pause = %d; want 303\n%s", a.status, a.body)
	}
	wantPage(t, "GET / paused", b.get(e.srv.URL+"/"), http.StatusOK, `id="call-paused">While you are paused, "I'm on a call" sets nothing`)

	a := b.post(e.srv.URL+"/call", e.srv.URL, url.Values{"csrf": {csrf}, "minutes": {"30"}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/?call=paused" {
		t.Fatalf("POST /call while paused = %d (Location %q); want 303 to /?call=paused\n%s", a.status, a.header.Get("Location"), a.body)
	}
	if e.people.view(aliceOID).OnCallUntil.IsZero() {
		t.Errorf("the call while paused was not recorded")
	}
	after := b.get(e.srv.URL + a.header.Get("Location"))
	wantPage(t, "GET /?call=paused", after, http.StatusOK, `id="call-set-nothing" role="status">Your call is recorded, but you are paused: it sets nothing in Teams.`)
	wantPage(t, "GET /?call=paused", after, http.StatusOK, `, but you are paused: Teams is not set for it until you resume.`)
	if strings.Contains(after.body, "Teams shows you Busy, in a call") {
		t.Errorf("the page says Teams shows a paused person in a call:\n%s", after.body)
	}

	if a := b.post(e.srv.URL+"/resume", e.srv.URL, url.Values{"csrf": {csrf}}); a.status != http.StatusSeeOther {
		t.Fatalf("POST /resume = %d; want 303\n%s", a.status, a.body)
	}
	a = b.post(e.srv.URL+"/call", e.srv.URL, url.Values{"csrf": {csrf}, "minutes": {"30"}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Errorf("POST /call not paused = %d (Location %q); want 303 to /", a.status, a.header.Get("Location"))
	}
	// An old ?call=paused link says nothing once the pause is over.
	resumed := b.get(e.srv.URL + "/?call=paused")
	wantPage(t, "GET /?call=paused after resuming", resumed, http.StatusOK, "Teams shows you Busy, in a call")
	if strings.Contains(resumed.body, `id="call-set-nothing"`) || strings.Contains(resumed.body, `id="call-paused"`) {
		t.Errorf("the page warns of a pause that is over:\n%s", resumed.body)
	}
}
