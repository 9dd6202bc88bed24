package server

import (
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/engine"
	"github.com/calpresence/calpresence/sync/identity"
)

// Secrets the sample status carries in places an engine should already
// have redacted; the page must not show them either way.
const (
	feedToken = "zt0k3nQUERY"
	pathToken = "a1b2c3d4e5f6g7h8i9j0k1l2"
	errToken  = "s3cr3tINERROR"
)

var pageNow = time.Date(2027, 3, 4, 15, 0, 0, 0, time.UTC)

// sampleStatus is a worker with something in every section: a stale
// source, alice in a meeting, bob throttled, carol refused, an address
// nobody has, Graph errors.
func sampleStatus() engine.Status {
	now := pageNow
	return engine.Status{
		Now:   now,
		Ready: true,
		Sources: []engine.SourceStatus{
			{Name: "google-team", URL: "https://calendar.google.com/calendar/ical/team%40contoso.com/private-" + pathToken + "/basic.ics",
				Loaded: true, Healthy: false, Stale: true, CopyAge: "26h4m10s", LastSuccess: now.Add(-26 * time.Hour), Occurrences: 12,
				LastError: "fetch https://calendar.google.com/x.ics?token=" + errToken + ": HTTP 503"},
			{Name: "zoom-sales", URL: "https://example.zoom.us/feed.ics?token=" + feedToken, Loaded: true, Healthy: true,
				LastSuccess: now.Add(-3 * time.Minute), Occurrences: 42},
		},
		Busy: []engine.BusyPerson{{
			User: "alice@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000001", Availability: "Busy", Activity: "InAConferenceCall",
			Since: now.Add(-10 * time.Minute), Until: now.Add(30 * time.Minute),
			Meetings: []engine.Meeting{{Source: "zoom-sales", UID: "ZOOM-1", Summary: "Weekly sync <script>alert(1)</script>", Start: now.Add(-10 * time.Minute), End: now.Add(30 * time.Minute)}},
			Shown:    presence.Shown{Availability: "Busy", Activity: "InAConferenceCall"}, ShownAt: now.Add(-time.Minute), Readback: engine.ReadbackShown,
		}, {
			User: "erin@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000005", Availability: "Busy", Activity: "InAConferenceCall",
			Since: now.Add(-10 * time.Minute), Until: now.Add(30 * time.Minute),
			Meetings: []engine.Meeting{{Source: "zoom-sales", UID: "ZOOM-2", Summary: "Board", Start: now.Add(-10 * time.Minute), End: now.Add(30 * time.Minute)}},
			Shown:    presence.Shown{Availability: "Available", Activity: "Available"}, ShownAt: now.Add(-2 * time.Minute), Readback: engine.ReadbackOwnStatus,
		}},
		Next: []engine.Transition{
			{At: now.Add(5 * time.Minute), User: "dave@contoso.com", Busy: true, Meeting: "Design review"},
			{At: now.Add(30 * time.Minute), User: "alice@contoso.com", Busy: false, Meeting: "Weekly sync"},
		},
		Held: []engine.HeldPerson{
			{User: "bob@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000002", Kind: engine.HoldThrottle, Tries: 3,
				Reason: "setPresence for 9a1f3c2e-0000-4000-8000-000000000002: HTTP 429 TooManyRequests", Until: now.Add(2 * time.Minute)},
			{User: "carol@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000003", Kind: engine.HoldRefused,
				Reason: "setPresence for 9a1f3c2e-0000-4000-8000-000000000003: HTTP 403 Forbidden: no Teams license", Until: now.Add(50 * time.Minute)},
		},
		Unresolved:      []identity.Unresolved{{Address: "ghost@partner.example", Reason: "unknown"}},
		UnresolvedCount: 1200, // the rest not shown
		GraphErrors: []engine.GraphError{
			{At: now.Add(-time.Minute), Op: "set", User: "bob@contoso.com", Status: 429, Message: "setPresence: HTTP 429 TooManyRequests"},
			{At: now.Add(-4 * time.Minute), Op: "set", User: "carol@contoso.com", Status: 403, Message: "setPresence: HTTP 403 Forbidden: no Teams license"},
		},
		Signals: []engine.Signal{
			{Vendor: "zoom", Event: "ended", Meeting: "zoom:83412345678", At: now.Add(-2 * time.Minute), Received: now.Add(-2 * time.Minute), Expires: now.Add(30 * time.Minute)},
			{Vendor: "webex", Event: "left", Meeting: "webex:25123456789", Email: "bob@contoso.com", At: now.Add(-6 * time.Minute), Expires: now.Add(time.Hour)},
		},
		Live: []signals.Live{
			{Email: "erin@contoso.com", Vendor: "webex", Kind: state.SignalCall, Call: "Y2lzY29zcGFyazovL3VzL0NBTEwvMQ", Status: "connected",
				Pair: presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInACall}, Since: now.Add(-3 * time.Minute)},
			{Email: "frank@contoso.com", Vendor: "zoom", Kind: state.SignalPresence, Status: "On_Phone_Call",
				Pair: presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInACall}, Since: now.Add(-time.Minute)},
		},
	}
}

// node is an element of a parsed page.
type node struct {
	tag      string
	attrs    map[string]string
	children []*node
	text     strings.Builder // all text inside, children's included
}

// parseHTML parses an HTML page (ours, or Chromium's DOM dump) into a
// tree, with encoding/xml in its forgiving HTML mode.
func parseHTML(t *testing.T, page string) *node {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(page))
	d.Strict, d.AutoClose, d.Entity = false, xml.HTMLAutoClose, xml.HTMLEntity
	root := &node{tag: "#root"}
	stack := []*node{root}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("parse page: %v\n%s", err, page)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &node{tag: strings.ToLower(tok.Name.Local), attrs: map[string]string{}}
			for _, a := range tok.Attr {
				n.attrs[strings.ToLower(a.Name.Local)] = a.Value
			}
			for _, n := range stack {
				n.text.WriteByte(' ') // elements separate words, as a browser shows them
			}
			top := stack[len(stack)-1]
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			for _, n := range stack {
				n.text.WriteByte(' ')
			}
			for i := len(stack) - 1; i > 0; i-- {
				if stack[i].tag == strings.ToLower(tok.Name.Local) {
					stack = stack[:i]
					break
				}
			}
		case xml.CharData:
			for _, n := range stack {
				n.text.Write(tok)
			}
		}
	}
	return root
}

// all returns the elements under n (n included) for which match holds.
func (n *node) all(match func(*node) bool) []*node {
	var out []*node
	if match(n) {
		out = append(out, n)
	}
	for _, c := range n.children {
		out = append(out, c.all(match)...)
	}
	return out
}

func (n *node) byID(id string) *node {
	if got := n.all(func(x *node) bool { return x.attrs["id"] == id }); len(got) > 0 {
		return got[0]
	}
	return &node{}
}

func (n *node) byClass(class string) []*node {
	return n.all(func(x *node) bool { return strings.Contains(" "+x.attrs["class"]+" ", " "+class+" ") })
}

func (n *node) byTag(tag string) []*node {
	return n.all(func(x *node) bool { return x.tag == tag })
}

// words is n's text with white space collapsed.
func (n *node) words() string { return strings.Join(strings.Fields(n.text.String()), " ") }

func getPage(t *testing.T, st engine.Status) (string, *httptest.ResponseRecorder) {
	t.Helper()
	h := Handler(&fakeEngine{status: st}, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler))
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = "127.0.0.1:8080" // httptest's example.com is not a name the page answers
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Body.String(), rec
}

// checkPage checks what a person opening the page looks for. It serves
// both the page as sent and Chromium's rendering of it.
func checkPage(t *testing.T, doc *node) {
	t.Helper()
	for _, tc := range []struct{ section, want string }{
		{"sources", "google-team stale copy 26h4m10s old"},
		{"sources", "2027-03-03 13:00:00 UTC 26h00m ago"},
		{"sources", "fetch https://calendar.google.com/x.ics?<redacted>: HTTP 503"},
		{"sources", "https://calendar.google.com/calendar/ical/team%40contoso.com/private-<redacted>/basic.ics"},
		{"sources", "zoom-sales healthy 2027-03-04 14:57:00 UTC 3m ago none 42 https://example.zoom.us/feed.ics?<redacted>"},
		{"busy", "erin@contoso.com Busy InAConferenceCall Available Available Teams shows Available — their own status read 2m ago Board"},
		{"busy", "alice@contoso.com Busy InAConferenceCall Busy InAConferenceCall read 1m ago Weekly sync <script>alert(1)</script> · zoom-sales · 14:50–15:30 UTC 2027-03-04 15:30:00 UTC in 30m"},
		{"next", "2027-03-04 15:05:00 UTC in 5m dave@contoso.com busy Design review"},
		{"next", "2027-03-04 15:30:00 UTC in 30m alice@contoso.com free Weekly sync"},
		{"held", "bob@contoso.com 9a1f3c2e-0000-4000-8000-000000000002 throttled 3 tries setPresence for 9a1f3c2e-0000-4000-8000-000000000002: HTTP 429 TooManyRequests"},
		{"held", "carol@contoso.com 9a1f3c2e-0000-4000-8000-000000000003 refused by Graph setPresence for 9a1f3c2e-0000-4000-8000-000000000003: HTTP 403 Forbidden: no Teams license 2027-03-04 15:50:00 UTC in 50m"},
		{"held", "ghost@partner.example unknown"},
		{"held", "Calendar addresses that name no Entra user (1200) Their meetings make nobody busy. The first 1 by address are shown."},
		{"graph-errors", "2027-03-04 14:59:00 UTC 1m ago set bob@contoso.com HTTP 429 setPresence: HTTP 429 TooManyRequests"},
		{"signals", "2027-03-04 14:58:00 UTC 2m ago zoom ended zoom:83412345678 everyone 2027-03-04 15:30:00 UTC"},
		{"signals", "webex left webex:25123456789 bob@contoso.com"},
		{"live", "erin@contoso.com webex call Y2lzY29zcGFyazovL3VzL0NBTEwvMQ: connected Busy / InACall 2027-03-04 14:57:00 UTC 3m ago"},
		{"live", "frank@contoso.com zoom presence: On_Phone_Call Busy / InACall"},
	} {
		if got := doc.byID(tc.section).words(); !strings.Contains(got, tc.want) {
			t.Errorf("section %s = %q; want it to show %q", tc.section, got, tc.want)
		}
	}
	// The stale source is flagged as such, in its own row.
	for _, row := range doc.byClass("source") {
		stale := len(row.byClass("bad")) > 0
		if want := row.attrs["data-source"] == "google-team"; stale != want {
			t.Errorf("source row %q flagged stale/unhealthy = %v; want %v", row.attrs["data-source"], stale, want)
		}
	}
	if n := len(doc.byTag("script")); n != 0 {
		t.Errorf("page has %d script elements; want none (a meeting title is text)", n)
	}
	if got := doc.byID("busy").byClass("busy-person"); len(got) != 2 || got[0].attrs["data-user"] != "alice@contoso.com" || got[1].attrs["data-user"] != "erin@contoso.com" {
		t.Errorf("busy rows = %d; want alice's and erin's", len(got))
	}
}

func TestStatusPage(t *testing.T) {
	body, rec := getPage(t, sampleStatus())
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET / = %d %q; want 200 text/html", rec.Code, rec.Header().Get("Content-Type"))
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q; want default-src 'none'", csp)
	}
	doc := parseHTML(t, body)
	refresh := doc.all(func(n *node) bool { return n.tag == "meta" && n.attrs["http-equiv"] == "refresh" })
	if len(refresh) != 1 || refresh[0].attrs["content"] != "30" {
		t.Errorf("meta refresh = %v; want one, every 30 s", refresh)
	}
	checkPage(t, doc)
	for _, secret := range []string{feedToken, pathToken, errToken} {
		if strings.Contains(body, secret) {
			t.Errorf("the page shows a secret (%q)", secret)
		}
	}
}

func TestStatusPageEmpty(t *testing.T) {
	body, rec := getPage(t, engine.Status{Now: pageNow})
	if rec.Code != 200 {
		t.Fatalf("GET / = %d", rec.Code)
	}
	doc := parseHTML(t, body)
	for section, want := range map[string]string{
		"busy":         "Nobody is busy now.",
		"held":         "Nobody is held back.",
		"next":         "No changes within the horizon.",
		"graph-errors": "No failed Graph calls since start.",
		"signals":      "No live meeting signals in force",
		"live":         "No call in progress and no Zoom presence in force",
		"sources":      "No sources are configured.",
	} {
		if got := doc.byID(section).words(); !strings.Contains(got, want) {
			t.Errorf("empty section %s = %q; want %q", section, got, want)
		}
	}
	if got := doc.byTag("header")[0].words(); !strings.Contains(got, "starting: first pass not done") {
		t.Errorf("header = %q; want it to say the worker is starting", got)
	}
}

func TestStatusPageOnlyAtRoot(t *testing.T) {
	h := Handler(&fakeEngine{status: sampleStatus()}, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler))
	for path, want := range map[string]int{"/": 200, "/nope": 404, "/index.html": 404} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", path, nil)
		req.Host = "localhost:8080"
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("GET %s = %d; want %d", path, rec.Code, want)
		}
	}
}

func TestRelative(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "now"}, {500 * time.Millisecond, "now"}, {40 * time.Second, "in 40s"}, {-40 * time.Second, "40s ago"},
		{5*time.Minute + 30*time.Second, "in 5m"}, {-3 * time.Minute, "3m ago"}, {3*time.Hour + 20*time.Minute, "in 3h20m"},
		{-26 * time.Hour, "26h00m ago"}, {72 * time.Hour, "in 3d"},
	} {
		if got := relative(pageNow.Add(tt.d), pageNow); got != tt.want {
			t.Errorf("relative(now%+v) = %q; want %q", tt.d, got, tt.want)
		}
	}
	if got := relative(time.Time{}, pageNow); got != "" {
		t.Errorf("relative(zero) = %q; want \"\"", got)
	}
}

// TestStatusPageShowsReload: a refused reload shows as a line with its
// error (URLs redacted) and when; an applied one with its counts.
func TestStatusPageShowsReload(t *testing.T) {
	st := sampleStatus()
	at := st.Now.Add(-2 * time.Minute)
	st.Reload = &engine.ReloadStatus{At: at, Error: `config.yaml:30: sources[1].url: must be http(s) or file (got "ftp://host/feed.ics?token=s3cret")`}
	page, _ := getPage(t, st)
	for _, want := range []string{"reload failed", "2027-03-04 14:58:00 UTC", "the configuration in force stays", "sources[1].url: must be http(s) or file"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "s3cret") {
		t.Error("status page shows a feed token from the reload error")
	}
	st.Reload = &engine.ReloadStatus{At: at, ReloadReport: engine.ReloadReport{Added: []string{"webex"}, Unchanged: 2, NeedsRestart: []string{"graph.client_secret"}}}
	page, _ = getPage(t, st)
	for _, want := range []string{"configuration reloaded", "1 added, 0 removed, 0 changed, 2 unchanged", "needs a restart: graph.client_secret"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q:\n%s", want, page)
		}
	}
}
