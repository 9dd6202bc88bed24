package timeline

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var now = time.Date(2027, 3, 4, 15, 20, 0, 0, time.UTC)

// elem is an element of the rendered markup, which is well-formed XML.
type elem struct {
	name     string
	attrs    map[string]string
	children []*elem
	words    strings.Builder // all text inside, in order, children's included
}

func (e *elem) attr(name string) string { return e.attrs[name] }

// parse parses the markup into a tree.
func parse(t *testing.T, markup string) *elem {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader("<root>" + markup + "</root>"))
	root := &elem{name: "#root"}
	stack := []*elem{root}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the timeline is not well-formed: %v\n%s", err, markup)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := &elem{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			for _, x := range stack {
				x.words.WriteByte(' ') // elements separate words, as a browser shows them
			}
			top := stack[len(stack)-1]
			top.children = append(top.children, e)
			stack = append(stack, e)
		case xml.EndElement:
			for _, x := range stack {
				x.words.WriteByte(' ')
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			for _, e := range stack {
				e.words.Write(tok)
			}
		}
	}
	return root
}

// all returns the elements under e (e included) for which match holds.
func (e *elem) all(match func(*elem) bool) []*elem {
	var out []*elem
	if match(e) {
		out = append(out, e)
	}
	for _, c := range e.children {
		out = append(out, c.all(match)...)
	}
	return out
}

func (e *elem) byClass(class string) []*elem {
	return e.all(func(x *elem) bool { return strings.Contains(" "+x.attr("class")+" ", " "+class+" ") })
}

func (e *elem) byTag(tag string) []*elem {
	return e.all(func(x *elem) bool { return x.name == tag })
}

// text is all the text inside e, white space collapsed.
func (e *elem) text() string { return strings.Join(strings.Fields(e.words.String()), " ") }

// render renders d at now and parses the result.
func render(t *testing.T, d Data) (*elem, string) {
	t.Helper()
	out, err := Render(d, now)
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, string(out)), string(out)
}

// percent reads an SVG percentage.
func percent(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || !strings.HasSuffix(s, "%") {
		t.Fatalf("%q is no percentage", s)
	}
	return v
}

// want is where a time falls across the window [now−1h, now+36h), in percent.
func want(at time.Time) float64 {
	return float64(at.Sub(now.Add(-Behind))) / float64(37*time.Hour) * 100
}

func TestPositions(t *testing.T) {
	h := func(n float64) time.Time { return now.Add(time.Duration(n * float64(time.Hour))) }
	tests := []struct {
		name        string
		start, end  time.Time
		x0, x1      time.Time // where the bar should be drawn
		cut         bool
		inTheWindow bool
	}{
		{"inside", h(2), h(5), h(2), h(5), false, true},
		{"in progress, begun before the window", h(-3), h(0.5), h(-1), h(0.5), false, true},
		{"running past the window", h(35), h(40), h(35), h(36), false, true},
		{"spanning it", h(-5), h(50), h(-1), h(36), false, true},
		{"cut by a signal", h(-0.5), h(0.25), h(-0.5), h(0.25), true, true},
		{"ended before it", h(-4), h(-1), time.Time{}, time.Time{}, false, false},
		{"starting after it", h(36), h(37), time.Time{}, time.Time{}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := Bar{Start: tc.start, End: tc.end, Meetings: []Meeting{{Title: "Sync", Source: "zoom"}}}
			if tc.cut {
				b.Cut = "ended"
			}
			root, out := render(t, Data{Rows: []Row{{Name: "alice@contoso.com", Bars: []Bar{b}}}})
			boxes := root.byClass("bar-box")
			if !tc.inTheWindow {
				if len(boxes) != 0 || len(root.byClass("row")) != 0 {
					t.Fatalf("a span outside the window is drawn:\n%s", out)
				}
				return
			}
			if len(boxes) != 1 {
				t.Fatalf("%d bars; want 1:\n%s", len(boxes), out)
			}
			x, w := percent(t, boxes[0].attr("x")), percent(t, boxes[0].attr("width"))
			if math.Abs(x-want(tc.x0)) > 1e-3 || math.Abs(x+w-want(tc.x1)) > 1e-3 {
				t.Errorf("bar from %.4f%% to %.4f%%; want %.4f%% to %.4f%%", x, x+w, want(tc.x0), want(tc.x1))
			}
			bar := root.byClass("bar")[0]
			if got, want := bar.attr("data-start")+" "+bar.attr("data-end"), tc.start.Format(time.RFC3339)+" "+tc.end.Format(time.RFC3339); got != want {
				t.Errorf("data-start, data-end = %s; want %s (the span's own times, not clipped)", got, want)
			}
			cuts := root.byClass("mark-cut")
			if tc.cut != (len(cuts) == 1) {
				t.Fatalf("%d marks of a cut; want one only for a span cut short", len(cuts))
			}
			if tc.cut {
				if got := percent(t, cuts[0].attr("x1")); math.Abs(got-want(tc.end)) > 1e-3 {
					t.Errorf("cut mark at %.4f%%; want %.4f%% (the span's end)", got, want(tc.end))
				}
			}
		})
	}
}

func TestNowLineAndHours(t *testing.T) {
	root, out := render(t, Data{Rows: []Row{{Name: "a", Bars: []Bar{{Start: now, End: now.Add(time.Hour)}}}}})
	lines := root.byClass("now")
	if len(lines) != 1 {
		t.Fatalf("%d now lines; want 1:\n%s", len(lines), out)
	}
	if got := percent(t, lines[0].attr("x1")); math.Abs(got-want(now)) > 1e-3 {
		t.Errorf("now line at %.4f%%; want %.4f%%", got, want(now))
	}
	if got := lines[0].attr("data-at"); got != now.Format(time.RFC3339) {
		t.Errorf("now line data-at = %s; want %s", got, now.Format(time.RFC3339))
	}
	// Whole hours from 15:00 (the window starts at 14:20) to 03:00 two
	// days on; labels at 18:00, 00:00 (the day), 06:00 … but none in the
	// last tenth (Sat 6 00:00 is 91% across).
	var labels []string
	for _, tx := range root.byClass("hours")[0].byTag("text") {
		labels = append(labels, tx.text())
	}
	if diff := cmp.Diff([]string{"18:00", "Fri 5", "06:00", "12:00", "18:00"}, labels); diff != "" {
		t.Errorf("hour labels (-want +got):\n%s", diff)
	}
	// Hour labels follow the zone given: Kolkata is UTC+5:30.
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	root, _ = render(t, Data{Loc: kolkata, Rows: []Row{{Name: "a", Bars: []Bar{{Start: now, End: now.Add(time.Hour)}}}}})
	first := root.byClass("hours")[0].byTag("line")[0]
	// 14:20 UTC is 19:50 in Kolkata: the first whole hour is 20:00, 10 minutes in.
	if got := percent(t, first.attr("x1")); math.Abs(got-want(now.Add(-Behind+10*time.Minute))) > 1e-3 {
		t.Errorf("first hour line at %.4f%%; want %.4f%% (20:00 in Kolkata)", got, want(now.Add(-Behind+10*time.Minute)))
	}
}

func TestBusiestFirst(t *testing.T) {
	span := func(from, hours float64) Bar {
		s := now.Add(time.Duration(from * float64(time.Hour)))
		return Bar{Start: s, End: s.Add(time.Duration(hours * float64(time.Hour)))}
	}
	rows := []Row{
		{Name: "dave", Bars: []Bar{span(1, 1)}},
		{Name: "carol", Bars: []Bar{span(1, 1)}},                // as busy as dave: by name
		{Name: "bob", Bars: []Bar{span(-20, 19.5), span(1, 2)}}, // 19.5h, but only 30m of it in the window
		{Name: "alice", Bars: []Bar{span(2, 1), span(4, 2)}},    // 3h
		{Name: "erin", Bars: []Bar{span(40, 1)}},                // nothing in the window
		{Name: "frank", Bars: []Bar{span(34, 5)}},               // 2h in the window
	}
	root, _ := render(t, Data{Rows: rows})
	var got []string
	for _, r := range root.byClass("row") {
		got = append(got, r.attr("data-person"))
	}
	if diff := cmp.Diff([]string{"alice", "bob", "frank", "carol", "dave"}, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

func TestPaging(t *testing.T) {
	var rows []Row
	for i := range 450 {
		// person-000 is the busiest: 450 minutes, person-449 one.
		rows = append(rows, Row{Name: fmt.Sprintf("person-%03d", i), Bars: []Bar{{Start: now, End: now.Add(time.Duration(450-i) * time.Minute)}}})
	}
	tests := []struct {
		page        int
		first, last string
		n           int
		prev, next  string
		says        string
	}{
		{0, "person-000", "person-199", 200, "", "?page=2#timeline", "Page 1 of 3 · next page"},
		{1, "person-000", "person-199", 200, "", "?page=2#timeline", "Page 1 of 3 · next page"},
		{2, "person-200", "person-399", 200, "?page=1#timeline", "?page=3#timeline", "Page 2 of 3 · previous page · next page"},
		{3, "person-400", "person-449", 50, "?page=2#timeline", "", "Page 3 of 3 · previous page"},
		{9, "person-400", "person-449", 50, "?page=2#timeline", "", "Page 3 of 3 · previous page"},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.page), func(t *testing.T) {
			root, _ := render(t, Data{Rows: rows, Page: tc.page})
			rs := root.byClass("row")
			if len(rs) != tc.n || rs[0].attr("data-person") != tc.first || rs[len(rs)-1].attr("data-person") != tc.last {
				t.Fatalf("page %d shows %d rows, %s…%s; want %d, %s…%s", tc.page, len(rs),
					rs[0].attr("data-person"), rs[len(rs)-1].attr("data-person"), tc.n, tc.first, tc.last)
			}
			var prev, next string
			for _, a := range root.byTag("a") {
				switch a.text() {
				case "previous page":
					prev = a.attr("href")
				case "next page":
					next = a.attr("href")
				}
			}
			if prev != tc.prev || next != tc.next {
				t.Errorf("links: previous %q, next %q; want %q, %q", prev, next, tc.prev, tc.next)
			}
			if got := root.byClass("timeline-pages")[0].text(); got != tc.says {
				t.Errorf("page navigation says %q; want %q", got, tc.says)
			}
			if rows := root.byTag("tbody")[0].byTag("tr"); len(rows) != tc.n {
				t.Errorf("the text equivalent has %d rows; want %d (the page's)", len(rows), tc.n)
			}
		})
	}
	// 200 rows exactly fit one page: no navigation.
	root, out := render(t, Data{Rows: rows[:200], PageParam: "tl"})
	if len(root.byClass("timeline-pages")) != 0 || strings.Contains(out, "tl=") {
		t.Errorf("200 rows have page links:\n%s", out)
	}
	root, _ = render(t, Data{Rows: rows[:201], PageParam: "tl", ID: "tl"})
	if a := root.byTag("a"); len(a) != 1 || a[0].attr("href") != "?tl=2#tl" {
		t.Errorf("201 rows: links %v; want one to ?tl=2#tl", a)
	}
}

func TestEscaping(t *testing.T) {
	evil := `</title><script>alert(1)</script>&"'`
	root, out := render(t, Data{Rows: []Row{{
		Name:  `mallory" onload="alert(2)`,
		Bars:  []Bar{{Start: now, End: now.Add(time.Hour), Meetings: []Meeting{{Title: evil, Source: "feed<svg>"}}}},
		Marks: []Mark{{At: now, Kind: `x" onclick="y`, Label: evil}},
	}}})
	if strings.Contains(out, "<script") || strings.Contains(out, "<svg>") || strings.Contains(out, `" onload`) || strings.Contains(out, `" onclick`) {
		t.Fatalf("markup lets a title or name through unescaped:\n%s", out)
	}
	label := evil + " (feed<svg>)"
	if got := root.byClass("bar-box")[0].byTag("text")[0].text(); got != label {
		t.Errorf("bar label = %q; want %q", got, label)
	}
	if got := root.byClass("row")[0].attr("data-person"); got != `mallory" onload="alert(2)` {
		t.Errorf("data-person = %q; want the name as given", got)
	}
	if len(root.byTag("script")) != 0 {
		t.Error("the markup holds a script element")
	}
}

func TestTextEquivalent(t *testing.T) {
	rows := []Row{{
		Name: "alice@contoso.com",
		Bars: []Bar{
			{Start: now.Add(-30 * time.Minute), End: now.Add(30 * time.Minute), Meetings: []Meeting{{Title: "Weekly sync", Source: "zoom-sales"}}},
			{Start: now.Add(2 * time.Hour), End: now.Add(3 * time.Hour), Live: true, Meetings: []Meeting{{Title: "call connected", Source: "webhook:webex"}}},
		},
		Marks: []Mark{{At: now.Add(-time.Minute), Kind: "readback", Label: "Teams showed Busy, InAConferenceCall"}},
	}}
	root, _ := render(t, Data{Rows: rows})
	svg := root.byTag("svg")[0]
	if svg.attr("role") != "img" || svg.attr("aria-labelledby") != "timeline-title timeline-desc" {
		t.Errorf("svg role %q, aria-labelledby %q; want img and its title and desc", svg.attr("role"), svg.attr("aria-labelledby"))
	}
	if got, want := svg.byTag("title")[0].text(), "Busy spans from Thu 4 Mar 14:20 to Sat 6 Mar 03:20"; got != want {
		t.Errorf("title = %q; want %q", got, want)
	}
	var got []string
	for _, tr := range root.byTag("tbody")[0].byTag("tr") {
		got = append(got, tr.text())
	}
	want := []string{
		"alice@contoso.com Thu 4 Mar 14:50 – Thu 4 Mar 15:50 Weekly sync (zoom-sales)",
		"alice@contoso.com Thu 4 Mar 17:20 – Thu 4 Mar 18:20 live: call connected (webhook:webex)",
		"alice@contoso.com Thu 4 Mar 15:19 Teams showed Busy, InAConferenceCall",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("text equivalent (-want +got):\n%s", diff)
	}
	if tb := root.byTag("table"); tb[0].attr("class") != "sr-only" {
		t.Errorf("table class %q; want sr-only", tb[0].attr("class"))
	}
	if len(root.byClass("live")) != 1 || len(root.byClass("mark-readback")) != 1 {
		t.Errorf("%d live bars and %d read-back marks; want 1 and 1", len(root.byClass("live")), len(root.byClass("mark-readback")))
	}

	// A page that lists the spans itself gets no second list.
	root, _ = render(t, Data{Rows: rows, ListedIn: "spans"})
	if len(root.byTag("table")) != 0 || root.byTag("svg")[0].attr("aria-details") != "spans" {
		t.Errorf("with ListedIn: %d tables, aria-details %q; want none and spans", len(root.byTag("table")), root.byTag("svg")[0].attr("aria-details"))
	}

	// Nobody busy: said in words, no drawing.
	root, _ = render(t, Data{})
	if len(root.byTag("svg")) != 0 || root.text() != "Nobody is busy in the next 36 hours." {
		t.Errorf("empty timeline says %q", root.text())
	}
	root, _ = render(t, Data{Empty: "Nothing <planned>.", Rows: []Row{{Name: "a", Bars: []Bar{{Start: now.Add(40 * time.Hour), End: now.Add(41 * time.Hour)}}}}})
	if got := root.text(); got != "Nothing <planned>." {
		t.Errorf("empty timeline with Empty set says %q; want %q", got, "Nothing <planned>.")
	}
}

// TestWithinStrictCSP: the markup needs nothing a Content-Security-Policy
// of default-src 'none' with style-src limited to a page's own sheet
// forbids: no script, no style element or attribute, no event handler, no
// resource to load.
func TestWithinStrictCSP(t *testing.T) {
	var rows []Row
	for i := range 300 {
		rows = append(rows, Row{Name: fmt.Sprintf("p%d", i),
			Bars:  []Bar{{Start: now.Add(time.Duration(i) * time.Minute), End: now.Add(2 * time.Hour), Live: i%2 == 0, Cut: "ended", Meetings: []Meeting{{Title: "t", Source: "s"}}}},
			Marks: []Mark{{At: now, Kind: "readback", Label: "Teams showed Busy"}}})
	}
	root, _ := render(t, Data{Rows: rows, Page: 1})
	for _, e := range root.all(func(*elem) bool { return true }) {
		if e.name == "script" || e.name == "style" || e.name == "image" || e.name == "img" || e.name == "foreignObject" || e.name == "use" {
			t.Errorf("the markup has a %s element", e.name)
		}
		for a := range e.attrs {
			if a == "style" || strings.HasPrefix(a, "on") || a == "src" {
				t.Errorf("<%s> has a %s attribute", e.name, a)
			}
			if a == "href" && !strings.HasPrefix(e.attrs[a], "?") {
				t.Errorf("<%s href=%q> leaves the page", e.name, e.attrs[a])
			}
		}
	}
}
