package selfservice

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html/template"
	"net/http"
	"time"

	"github.com/calpresence/calpresence/internal/timeline"
)

//go:embed page.html
var pageHTML string

//go:embed page.css
var pageCSS string

// pages are the templates; "when" is replaced per Server by one that shows
// times in Config.Location.
var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"iso":  func(t time.Time) string { return t.Format(time.RFC3339) },
	"when": func(t time.Time) string { return t.Format("Mon 2 Jan 15:04") },
}).Parse(pageHTML))

// csp allows nothing but the pages' own style sheet (by its hash) and
// forms posting back here: no script, no framing, no other origin.
var csp = func() string {
	sum := sha256.Sum256([]byte(pageCSS))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}()

// page is what every template is given; each uses its own fields.
type page struct {
	Title string
	Style template.CSS
	// refusal
	Text string
	// Back: the refusal came from a signed-in person's action, so the
	// link goes back to their page rather than to a new sign-in.
	Back bool
	// person
	Name, UPN, OID string
	CSRF           string
	View           View
	ViewError      bool
	Zone           string
	// PauseHour is the until of "Pause for an hour" (RFC 3339).
	PauseHour string
	// CallChoices are the minutes "I'm on a call" offers.
	CallChoices []int
	// CallWhilePaused is true on the page POST /call sends a paused
	// person to (?call=paused), while they are still paused.
	CallWhilePaused bool
	// FeedsOn shows "Your feeds" (selfservice.feeds), with at most
	// MaxFeeds.
	FeedsOn  bool
	MaxFeeds int
	// Timeline draws View.Spans over the next 36 hours (internal/timeline).
	Timeline template.HTML
}

// templates returns the pages with times shown in loc.
func templates(loc *time.Location) *template.Template {
	return template.Must(pages.Clone()).Funcs(template.FuncMap{
		"when": func(t time.Time) string { return t.In(loc).Format("Mon 2 Jan 15:04") },
	})
}

// showPerson renders the signed-in person's own page.
func (s *Server) showPerson(w http.ResponseWriter, r *http.Request, se session) {
	v, err := s.people.View(r.Context(), se.OID)
	if err != nil {
		s.logger.WarnContext(r.Context(), "selfservice: view unavailable", "oid", se.OID, "err", err)
	}
	p := page{
		Title: "Your presence", Name: se.Name, UPN: se.UPN, OID: se.OID, CSRF: se.CSRF,
		View: v, ViewError: err != nil, Zone: s.cfg.Location.String(),
		PauseHour:   s.now().Add(time.Hour).Truncate(time.Second).In(s.cfg.Location).Format(time.RFC3339),
		CallChoices: callChoices(s.cfg.MaxCall),
		FeedsOn:     s.cfg.Feeds, MaxFeeds: MaxFeeds,
	}
	p.CallWhilePaused = err == nil && v.Paused && r.URL.Query().Get("call") == callWhilePaused
	if err == nil && len(v.Spans) > 0 {
		if p.Timeline, err = timeline.Render(personTimeline(cmp.Or(se.Name, se.UPN), v, s.cfg.Location), s.now()); err != nil {
			s.logger.Error("selfservice: render timeline", "err", err)
		}
	}
	s.render(w, http.StatusOK, "person", p)
}

// personTimeline is a person's own spans as one row of the timeline.
// The page lists the same spans as text under "Busy ahead" (id spans),
// which serves as the drawing's text equivalent. What the read-back saw
// is not marked: View says what Teams shows, not when it was read.
func personTimeline(name string, v View, loc *time.Location) timeline.Data {
	row := timeline.Row{Name: name}
	for _, sp := range v.Spans {
		row.Bars = append(row.Bars, timeline.Bar{Start: sp.Start, End: sp.End, Meetings: []timeline.Meeting{{Title: sp.Why}}})
	}
	return timeline.Data{ID: "timeline", Rows: []timeline.Row{row}, Loc: loc, ListedIn: "spans",
		Empty: "Nothing in the next 36 hours."}
}

// refuse answers status with a page that says what was refused and why.
func (s *Server) refuse(w http.ResponseWriter, status int, title, text string) {
	s.render(w, status, "refusal", page{Title: title, Text: text})
}

// refuseAction is refuse for a signed-in person's action: the page links
// back to theirs.
func (s *Server) refuseAction(w http.ResponseWriter, status int, title, text string) {
	s.render(w, status, "refusal", page{Title: title, Text: text, Back: true})
}

// render executes a page template into w with the status.
func (s *Server) render(w http.ResponseWriter, status int, name string, p page) {
	p.Style = template.CSS(pageCSS)
	var b bytes.Buffer
	if err := s.pages.ExecuteTemplate(&b, name, p); err != nil {
		s.logger.Error("selfservice: render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// callChoices are the lengths "I'm on a call" offers: the usual ones up
// to max, and max itself.
func callChoices(max time.Duration) []int {
	maxMin := int(max / time.Minute)
	var out []int
	for _, m := range []int{MinCallMinutes, 15, 30, 45, 60, 90, 120, 180, 240} {
		if m < maxMin {
			out = append(out, m)
		}
	}
	return append(out, maxMin)
}
