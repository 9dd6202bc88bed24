package server

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strconv"
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
		Timeline: sampleTimeline(now),
		Next: []engine.Transition{
			{At: now.Add(5 * time.Minute), User: "dave@contoso.com", Busy: true, Meeting: "Design review"},
			{At: now.Add(30 * time.Minute), User: "alice@contoso.com", Busy: false, Meeting: "Weekly sync"},
		},
		Held: []engine.HeldPerson{
			{User: "bob@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000002", Kind: engine.HoldThrottle, Tries: 3,
				Reason: "setPresence for 9a1f3c2e-0000-4000-8000-000000000002: HTTP 429 TooManyRequests", Until: now.Add(2 * time.Minute)},
			{User: "carol@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000003", Kind: engine.HoldRefused,
				Reason: "setPresence for 9a1f3c2e-0000-4000-8000-000000000003: HTTP 403 Forbidden: no Teams license", Until: now.Add(50 * time.Minute)},
			{User: "gina@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000007", Kind: engine.HoldPaused, Reason: "paused on their own page"},
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

// sampleTimeline is everyone with a span in the window at now: erin in a
// meeting and then a call, frank on a Zoom call, dave in a review and
// away overnight (past the window's end), alice in two meetings, henry in
// a workshop begun before the window, bob in a standup a Zoom signal
// ended early. Busiest first, that is erin, frank, dave, alice, henry,
// bob.
func sampleTimeline(now time.Time) []engine.PersonSpans {
	at := func(d time.Duration) time.Time { return now.Add(d) }
	const h, m = time.Hour, time.Minute
	span := func(from, to time.Duration, ms ...engine.Meeting) engine.SpanStatus {
		return engine.SpanStatus{Start: at(from), End: at(to), Availability: "Busy", Activity: "InAConferenceCall", Meetings: ms}
	}
	return []engine.PersonSpans{
		{User: "alice@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000001", Spans: []engine.SpanStatus{
			span(-10*m, 30*m, engine.Meeting{Source: "zoom-sales", Summary: "Weekly sync <script>alert(1)</script>"}),
			span(3*h, 4*h+30*m, engine.Meeting{Source: "google-team", Summary: "Planning"}),
		}},
		{User: "bob@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000002", Spans: []engine.SpanStatus{
			span(-40*m, -5*m, engine.Meeting{Source: "zoom-sales", Summary: "Standup", Signal: state.SignalEnded}),
		}},
		{User: "dave@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000004", Spans: []engine.SpanStatus{
			span(5*m, h, engine.Meeting{Source: "zoom-sales", Summary: "Design review"}),
			span(30*h, 40*h, engine.Meeting{Source: "google-team", Summary: "Offsite"}),
		}},
		{User: "erin@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000005", Spans: []engine.SpanStatus{
			span(-10*m, 7*h+57*m, engine.Meeting{Source: "zoom-sales", Summary: "Board"},
				engine.Meeting{Source: "webhook:webex", Summary: "call connected"}),
		}},
		{User: "frank@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000006", Spans: []engine.SpanStatus{
			span(-m, 7*h+59*m, engine.Meeting{Source: "webhook:zoom", Summary: "Zoom presence On_Phone_Call"}),
		}},
		{User: "henry@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000008", Spans: []engine.SpanStatus{
			span(-5*h, h, engine.Meeting{Source: "google-team", Summary: "Workshop"}),
		}},
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
		{"held", "gina@contoso.com 9a1f3c2e-0000-4000-8000-000000000007 paused paused on their own page until they resume"},
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
	checkTimeline(t, doc)
	if got := doc.byID("busy").byClass("busy-person"); len(got) != 2 || got[0].attrs["data-user"] != "alice@contoso.com" || got[1].attrs["data-user"] != "erin@contoso.com" {
		t.Errorf("busy rows = %d; want alice's and erin's", len(got))
	}
}

// checkTimeline checks the timeline of sampleStatus: its rows busiest
// first, the live and cut spans and read-back marks marked, and the text
// equivalent (the page's tables list no spans ahead).
func checkTimeline(t *testing.T, doc *node) {
	t.Helper()
	ahead := doc.byID("ahead")
	var rows []string
	for _, r := range ahead.byClass("row") {
		rows = append(rows, r.attrs["data-person"])
	}
	if want := []string{"erin@contoso.com", "frank@contoso.com", "dave@contoso.com", "alice@contoso.com", "henry@contoso.com", "bob@contoso.com"}; !slices.Equal(rows, want) {
		t.Errorf("timeline rows = %q; want %q (busiest first)", rows, want)
	}
	var live []string
	for _, b := range ahead.byClass("live") {
		live = append(live, b.attrs["data-start"])
	}
	if want := []string{"2027-03-04T14:50:00Z", "2027-03-04T14:59:00Z"}; !slices.Equal(live, want) {
		t.Errorf("live bars start at %q; want %q (erin's call, frank's Zoom presence)", live, want)
	}
	if cut := ahead.byClass("mark-cut"); len(cut) != 1 || cut[0].attrs["data-at"] != "2027-03-04T14:55:00Z" {
		t.Errorf("cut marks = %d; want one, at bob's standup's end", len(cut))
	}
	if rb, own := ahead.byClass("mark-readback"), ahead.byClass("mark-own"); len(rb) != 1 || len(own) != 1 ||
		rb[0].attrs["data-at"] != "2027-03-04T14:59:00Z" || own[0].attrs["data-at"] != "2027-03-04T14:58:00Z" {
		t.Errorf("read-back marks: %d shown, %d own status; want alice's at 14:59, erin's at 14:58", len(rb), len(own))
	}
	svg := ahead.byTag("svg")
	if len(svg) == 0 || svg[0].attrs["role"] != "img" || len(svg[0].byTag("title")) == 0 || len(svg[0].byTag("desc")) == 0 {
		t.Fatalf("timeline: want an svg with role img, a title and a desc")
	}
	text := ahead.byClass("sr-only")
	if len(text) != 1 {
		t.Fatalf("timeline has %d text equivalents; want 1", len(text))
	}
	for _, want := range []string{
		"alice@contoso.com Thu 4 Mar 14:50 – Thu 4 Mar 15:30 Weekly sync <script>alert(1)</script> (zoom-sales)",
		"alice@contoso.com Thu 4 Mar 14:59 Teams showed Busy InAConferenceCall",
		"erin@contoso.com Thu 4 Mar 14:50 – Thu 4 Mar 22:57 live: Board (zoom-sales); call connected (webhook:webex)",
		"erin@contoso.com Thu 4 Mar 14:58 Teams showed Available Available: their own status",
		"bob@contoso.com Thu 4 Mar 14:20 – Thu 4 Mar 14:55, cut short by a live signal (ended) Standup (zoom-sales)",
		"dave@contoso.com Fri 5 Mar 21:00 – Sat 6 Mar 07:00 Offsite (google-team)",
	} {
		if got := text[0].words(); !strings.Contains(got, want) {
			t.Errorf("timeline text = %q; want it to say %q", got, want)
		}
	}
}

// TestStatusPageTimelinePages: past 200 people the timeline pages, by
// ?page=; the rest of the page stays the same.
func TestStatusPageTimelinePages(t *testing.T) {
	st := sampleStatus()
	st.Timeline = nil
	for i := range 250 {
		st.Timeline = append(st.Timeline, engine.PersonSpans{User: fmt.Sprintf("p%03d@contoso.com", i), UserID: strconv.Itoa(i),
			Spans: []engine.SpanStatus{{Start: pageNow, End: pageNow.Add(time.Duration(300-i) * time.Minute)}}})
	}
	for _, tc := range []struct {
		query       string
		rows        int
		first, link string
	}{
		{"", 200, "p000@contoso.com", "?page=2#timeline"},
		{"?page=2", 50, "p200@contoso.com", "?page=1#timeline"},
		{"?page=x", 200, "p000@contoso.com", "?page=2#timeline"},
	} {
		h := Handler(&fakeEngine{status: st}, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler))
		req := httptest.NewRequest("GET", "/"+tc.query, nil)
		req.Host = "127.0.0.1:8080"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		doc := parseHTML(t, rec.Body.String())
		rows := doc.byID("ahead").byClass("row")
		links := doc.byID("ahead").byTag("a")
		if len(rows) != tc.rows || rows[0].attrs["data-person"] != tc.first || len(links) != 1 || links[0].attrs["href"] != tc.link {
			t.Errorf("GET /%s: %d rows from %s, links %v; want %d from %s and a link to %s", tc.query, len(rows), rows[0].attrs["data-person"], links, tc.rows, tc.first, tc.link)
		}
		if got := doc.byID("sources").byClass("source"); len(got) != 2 {
			t.Errorf("GET /%s: %d sources; want the whole page beside the timeline", tc.query, len(got))
		}
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
		"ahead":        "Nobody is busy in the next 36 hours.",
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

// TestStatusPageOwnFeeds: people's own feeds are counted per person, the
// failing ones apart, and the section is absent when nobody has one.
func TestStatusPageOwnFeeds(t *testing.T) {
	st := sampleStatus()
	st.OwnFeeds = []engine.OwnFeedCount{
		{User: "alice@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000001", Feeds: 2},
		{User: "bob@contoso.com", UserID: "9a1f3c2e-0000-4000-8000-000000000002", Feeds: 1, Failing: 1},
	}
	body, _ := getPage(t, st)
	doc := parseHTML(t, body)
	rows := doc.byID("own-feeds").byClass("own-feeds")
	if len(rows) != 2 || rows[0].words() != "alice@contoso.com 2 0" || rows[1].words() != "bob@contoso.com 1 1" {
		var got []string
		for _, r := range rows {
			got = append(got, r.words())
		}
		t.Errorf("own-feed rows = %q; want alice 2 0, bob 1 1", got)
	}
	body, _ = getPage(t, sampleStatus())
	if strings.Contains(body, `id="own-feeds"`) {
		t.Errorf("the page has an own-feeds section with nobody's feeds")
	}
}
