// Package timeline draws people's busy spans over the next hours as SVG
// inside an HTML page: one row per person, a bar per span, the current
// time as a line (issue #23, "A timeline"). The status page and a
// person's own page both use it.
//
// Render is pure: the rows and a given now in, markup out; no clock, no
// I/O. The markup is produced by html/template (titles are escaped), runs
// no script and carries no style attribute, so that it stays within a
// Content-Security-Policy of default-src 'none' with style-src limited to
// the page's own style sheet: everything the SVG draws is set by
// presentation attributes (fill, stroke, font-size), which CSP does not
// govern.
//
// Positions across are percentages of the drawing's width and text sizes
// are pixels, so on a phone the bars narrow while their labels stay
// readable (a viewBox would shrink the text with the drawing).
package timeline

import (
	"bytes"
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The window shown: from Behind before now, so that a span in progress
// shows where it began, to Ahead after it.
const (
	Behind = time.Hour
	Ahead  = 36 * time.Hour
)

// Window returns the window Render shows at now: [now−Behind, now+Ahead).
// Callers that gather spans for it use this, so that one place says what
// "the next 36 hours" are.
func Window(now time.Time) (from, to time.Time) {
	return now.Add(-Behind), now.Add(Ahead)
}

// PageSize is the most rows one page shows; more are on the next pages.
const PageSize = 200

// Data is what Render draws.
type Data struct {
	// ID prefixes the ids of the drawing's elements (default "timeline").
	ID string
	// Rows are the people, in any order: Render orders them busiest first.
	Rows []Row
	// Page is the page shown, from 1 (0 is 1; past the last is the last).
	Page int
	// PageParam is the query parameter that names the page in the links
	// to the other pages (default "page").
	PageParam string
	// Loc is the zone of the hour marks and of the text equivalent (nil:
	// UTC).
	Loc *time.Location
	// ListedIn is the id of an element of the page that already lists the
	// same spans as text (a person's own page lists them under "Busy
	// ahead"). Empty: Render adds a visually hidden table of them, for
	// screen readers, with class "sr-only" (the page's style sheet hides
	// it).
	ListedIn string
	// Empty is what the timeline says when nobody has a span in the
	// window (default "Nobody is busy in the next 36 hours.").
	Empty string
}

// Row is one person and their spans.
type Row struct {
	Name string // shown at the row's start: a UPN, or "You"
	Bars []Bar
	// Marks are instants shown on the row, e.g. when the read-back saw
	// what Teams shows.
	Marks []Mark
}

// Bar is one busy span.
type Bar struct {
	Start, End time.Time
	// Meetings make the span; the bar is labelled with them.
	Meetings []Meeting
	// Live: a live signal or call (a Zoom or Webex webhook) made or
	// kept this span, not only a calendar.
	Live bool
	// Cut names the live signal that ended the span early ("ended",
	// "left"); "" when it ran as scheduled. Such a bar has a mark at
	// its end.
	Cut string
}

// Meeting labels a bar: its title (empty where the page shows no titles)
// and where it comes from.
type Meeting struct {
	Title  string
	Source string
}

// Mark is an instant on a row.
type Mark struct {
	At time.Time
	// Kind is a short word for the class of the mark ("readback",
	// "lost", "own", …); Label says what happened, in words.
	Kind  string
	Label string
}

// Layout in pixels (down) and of the text.
const (
	axisHeight = 30
	rowHeight  = 46
	nameY      = 14 // baseline of the name, from the row's top
	laneY      = 20 // top of the bars, from the row's top
	laneHeight = 20
	labelEvery = 6 // hours between two hour labels
)

//go:embed timeline.html
var markup string

var tmpl = template.Must(template.New("timeline").Parse(markup))

// view is what the template is given: every number already computed.
type view struct {
	ID, ListedIn       string
	Title, Desc        string
	Height             int
	Ticks              []tick
	Now                nowLine
	Rows               []rowView
	Empty              string // what an empty timeline says; "" when it is not
	Page, Pages        int
	Prev, Next         string // links to the other pages ("" none)
	First, Last, Total int    // rows shown (1-based) and in all
}

type tick struct {
	X     string // percentage
	Label string // "" for an unlabelled hour
	Day   bool   // midnight
}

type nowLine struct {
	X, At, Label string
	Shown        bool
}

type rowView struct {
	Name      string
	NameY     int
	LaneY     int
	LaneH     int
	MarkY1    int
	MarkY2    int
	Bars      []barView
	Marks     []markView
	BusyLabel string
}

type barView struct {
	X, W       string // percentages
	Start, End string // RFC 3339, the span's own times (not clipped)
	Label      string
	Tip        string // label with times
	Live       bool
	Fill       string
	Text       string // for the text equivalent: from – to
	Cut        *markView
}

type markView struct {
	X, At, Kind, Label string
	When               string // for the text equivalent
}

// Render returns the timeline of d at now: the SVG, a text equivalent
// (unless d.ListedIn names one) and links to the other pages. Rows
// without a bar in the window are left out; the others go busiest first
// (busy time in the window, then name), PageSize to a page.
func Render(d Data, now time.Time) (template.HTML, error) {
	var b bytes.Buffer
	if err := tmpl.Execute(&b, build(d, now)); err != nil {
		return "", fmt.Errorf("render timeline: %w", err)
	}
	return template.HTML(b.String()), nil // produced by html/template, which escaped every value
}

// build computes the view: positions from times, the order, the page.
func build(d Data, now time.Time) view {
	from, to := Window(now)
	loc := d.Loc
	if loc == nil {
		loc = time.UTC
	}
	id := cmp.Or(d.ID, "timeline")
	x := func(t time.Time) string { return pct(t, from, to) }
	when := func(t time.Time) string { return t.In(loc).Format("Mon 2 Jan 15:04") }

	type ranked struct {
		row  Row
		bars []Bar
		busy time.Duration
	}
	var rows []ranked
	for _, r := range d.Rows {
		var bars []Bar
		var busy time.Duration
		for _, b := range r.Bars {
			s, e := clip(b.Start, b.End, from, to)
			if !e.After(s) {
				continue
			}
			bars = append(bars, b)
			busy += e.Sub(s)
		}
		if len(bars) == 0 {
			continue
		}
		slices.SortFunc(bars, func(a, b Bar) int { return a.Start.Compare(b.Start) })
		rows = append(rows, ranked{row: r, bars: bars, busy: busy})
	}
	slices.SortStableFunc(rows, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(b.busy, a.busy), strings.Compare(a.row.Name, b.row.Name))
	})

	pages := max(1, (len(rows)+PageSize-1)/PageSize)
	page := min(max(d.Page, 1), pages)
	first := (page - 1) * PageSize
	shown := rows[first:min(first+PageSize, len(rows))]

	v := view{
		ID: id, ListedIn: d.ListedIn,
		Height: axisHeight + len(shown)*rowHeight + 4,
		Page:   page, Pages: pages,
		First: first + 1, Last: first + len(shown), Total: len(rows),
	}
	if len(rows) == 0 {
		v.Empty = cmp.Or(d.Empty, "Nobody is busy in the next 36 hours.")
	}
	v.Title = fmt.Sprintf("Busy spans from %s to %s", when(from), when(to))
	switch {
	case len(rows) == 0:
		v.Desc = "Nobody is busy in this window."
	case pages > 1:
		v.Desc = fmt.Sprintf("People %d to %d of %d, busiest first.", v.First, v.Last, v.Total)
	default:
		v.Desc = fmt.Sprintf("%d %s, busiest first.", len(rows), plural(len(rows), "person", "people"))
	}
	if d.ListedIn != "" {
		v.Desc += " The same spans are listed as text on this page."
	} else {
		v.Desc += " The same spans follow as a table."
	}
	param := cmp.Or(d.PageParam, "page")
	link := func(p int) string { return "?" + url.Values{param: {strconv.Itoa(p)}}.Encode() + "#" + id }
	if page > 1 {
		v.Prev = link(page - 1)
	}
	if page < pages {
		v.Next = link(page + 1)
	}

	// Hours, in loc: a line each, a label every labelEvery hours, the day
	// at midnight.
	for h := firstHour(from.In(loc)); h.Before(to); h = nextHour(h) {
		tk := tick{X: x(h), Day: h.Hour() == 0}
		// No label in the last tenth, where it would run off a phone.
		if h.Hour()%labelEvery == 0 && frac(h, from, to) < 0.9 {
			tk.Label = h.Format("15:04")
			if tk.Day {
				tk.Label = h.Format("Mon 2")
			}
		}
		v.Ticks = append(v.Ticks, tk)
	}
	if !now.Before(from) && now.Before(to) {
		v.Now = nowLine{X: x(now), At: now.UTC().Format(time.RFC3339), Label: "now " + now.In(loc).Format("15:04"), Shown: true}
	}

	for i, r := range shown {
		top := axisHeight + i*rowHeight
		rv := rowView{Name: r.row.Name, NameY: top + nameY, LaneY: top + laneY, LaneH: laneHeight,
			MarkY1: top + laneY - 4, MarkY2: top + laneY + laneHeight + 4,
			BusyLabel: hours(r.busy)}
		for _, b := range r.bars {
			s, e := clip(b.Start, b.End, from, to)
			label := labelOf(b)
			bv := barView{
				X: x(s), W: width(s, e, from, to),
				Start: b.Start.UTC().Format(time.RFC3339), End: b.End.UTC().Format(time.RFC3339),
				Label: label, Live: b.Live, Fill: "#cf222e",
				Text: when(b.Start) + " – " + when(b.End),
			}
			if b.Live {
				bv.Fill = "#8250df"
			}
			bv.Tip = label + ", " + bv.Text
			if b.Cut != "" && !b.End.After(to) {
				bv.Cut = &markView{X: x(b.End), At: b.End.UTC().Format(time.RFC3339), Kind: "cut",
					Label: "cut short by a live signal (" + b.Cut + ")"}
				bv.Text += ", cut short by a live signal (" + b.Cut + ")"
			}
			rv.Bars = append(rv.Bars, bv)
		}
		for _, m := range r.row.Marks {
			if m.At.Before(from) || !m.At.Before(to) {
				continue
			}
			rv.Marks = append(rv.Marks, markView{X: x(m.At), At: m.At.UTC().Format(time.RFC3339), Kind: m.Kind,
				Label: m.Label, When: when(m.At)})
		}
		v.Rows = append(v.Rows, rv)
	}
	return v
}

// firstHour is the first whole hour of t's wall clock at or after t.
func firstHour(t time.Time) time.Time {
	past := time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second + time.Duration(t.Nanosecond())
	if past == 0 {
		return t
	}
	return t.Add(time.Hour - past)
}

// nextHour is the next whole hour after h (itself whole) in h's zone;
// adding an hour keeps whole hours through a change of offset but for
// half-hour zones, where the wall clock is what counts.
func nextHour(h time.Time) time.Time {
	n := h.Add(time.Hour)
	return n.Add(-time.Duration(n.Minute()) * time.Minute)
}

// labelOf is the bar's label: its meetings, each "Title (source)", or the
// source alone where no title is shown; a live bar says so first.
func labelOf(b Bar) string {
	var parts []string
	for _, m := range b.Meetings {
		switch {
		case m.Title != "" && m.Source != "":
			parts = append(parts, m.Title+" ("+m.Source+")")
		case m.Title != "":
			parts = append(parts, m.Title)
		case m.Source != "":
			parts = append(parts, m.Source)
		}
	}
	label := strings.Join(slices.Compact(parts), "; ")
	if label == "" {
		label = "busy"
	}
	if b.Live {
		label = "live: " + label
	}
	return label
}

// clip returns [s, e) within [from, to).
func clip(s, e, from, to time.Time) (time.Time, time.Time) {
	if s.Before(from) {
		s = from
	}
	if e.After(to) {
		e = to
	}
	return s, e
}

// pct is t's place across the window, as an SVG percentage.
func pct(t, from, to time.Time) string {
	return strconv.FormatFloat(frac(t, from, to)*100, 'f', 4, 64) + "%"
}

// width is the share of the window [s, e) takes, as an SVG percentage.
func width(s, e, from, to time.Time) string {
	return strconv.FormatFloat((frac(e, from, to)-frac(s, from, to))*100, 'f', 4, 64) + "%"
}

func frac(t, from, to time.Time) float64 {
	return float64(t.Sub(from)) / float64(to.Sub(from))
}

// hours says a busy time in words for the text equivalent: "1h30m".
func hours(d time.Duration) string {
	d = d.Round(time.Minute)
	if d < time.Hour {
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
	return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
