package server

import (
	"bytes"
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/calpresence/calpresence/internal/timeline"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/sync/engine"
)

// The status page at / (docs/operations.md): server-rendered, readable
// without JavaScript, reloading itself every 30 s. It shows what the
// engine's Status snapshot holds; feed URLs and any URL inside an error
// text are redacted here again, whatever the engine already did, so that
// no feed token reaches the page.
//
//go:embed status.html
var statusHTML string

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"utc":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"iso":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"hm":     func(t time.Time) string { return t.UTC().Format("15:04") },
	"redact": sources.RedactURL,
	"scrub":  scrub,
	"kind":   holdKind,
	// rel and timeline are replaced per request: relative to the
	// snapshot, and its timeline at the page asked for.
	"rel":      func(time.Time) string { return "" },
	"timeline": func() template.HTML { return "" },
}).Parse(statusHTML))

// serveStatus renders the status page.
func serveStatus(eng Engine, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st := eng.Status(r.Context(), time.Now())
		t, err := statusPage.Clone()
		var tl template.HTML
		if err == nil {
			page, _ := strconv.Atoi(r.URL.Query().Get(timelinePageParam))
			tl, err = timeline.Render(timelineData(st, page), st.Now)
		}
		if err == nil {
			t = t.Funcs(template.FuncMap{
				"rel":      func(at time.Time) string { return relative(at, st.Now) },
				"timeline": func() template.HTML { return tl },
			})
			var buf bytes.Buffer
			if err = t.Execute(&buf, st); err == nil {
				h := w.Header()
				h.Set("Content-Type", "text/html; charset=utf-8")
				h.Set("Cache-Control", "no-store")
				// Nothing on the page runs or loads anything; nothing may
				// frame it.
				h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
				h.Set("X-Content-Type-Options", "nosniff")
				h.Set("Referrer-Policy", "no-referrer")
				_, _ = buf.WriteTo(w)
				return
			}
		}
		log.Error("render status page", "err", err)
		http.Error(w, "status page failed; see /readyz", http.StatusInternalServerError)
	}
}

// timelinePageParam names the timeline's page in the status page's URL.
const timelinePageParam = "page"

// timelineData is the status page's timeline: everyone with a span in
// the window, their meetings with titles (the page shows titles
// elsewhere too), what the read-back saw for the people busy now, times
// in UTC like the rest of the page.
func timelineData(st engine.Status, page int) timeline.Data {
	busy := make(map[string]engine.BusyPerson, len(st.Busy))
	for _, b := range st.Busy {
		busy[b.UserID] = b
	}
	d := timeline.Data{ID: "timeline", Page: page, PageParam: timelinePageParam, Loc: time.UTC}
	for _, p := range st.Timeline {
		row := timeline.Row{Name: p.User}
		for _, s := range p.Spans {
			bar := timeline.Bar{Start: s.Start, End: s.End}
			for _, m := range s.Meetings {
				bar.Meetings = append(bar.Meetings, timeline.Meeting{Title: m.Summary, Source: m.Source})
				bar.Live = bar.Live || m.Live()
				bar.Cut = cmp.Or(bar.Cut, m.Signal)
			}
			row.Bars = append(row.Bars, bar)
		}
		if b, ok := busy[p.UserID]; ok && !b.ShownAt.IsZero() && b.Shown.Availability != "" {
			row.Marks = append(row.Marks, readbackMark(b))
		}
		d.Rows = append(d.Rows, row)
	}
	return d
}

// readbackMark is what the read-back saw for someone busy now, as a mark
// on their row.
func readbackMark(b engine.BusyPerson) timeline.Mark {
	m := timeline.Mark{At: b.ShownAt, Kind: "readback", Label: "Teams showed " + b.Shown.Availability + " " + b.Shown.Activity}
	switch b.Readback {
	case engine.ReadbackOwnStatus:
		m.Kind, m.Label = "own", m.Label+": their own status"
	case engine.ReadbackLost:
		m.Kind, m.Label = "lost", m.Label+": session lost, set again"
	}
	return m
}

// urlInText finds URLs inside free text (an error message).
var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

// scrub redacts every URL inside s. Punctuation closing a sentence or a
// clause after a URL ("fetch https://…/feed.ics?token=x: HTTP 503") stays.
func scrub(s string) string {
	return urlInText.ReplaceAllStringFunc(s, func(u string) string {
		trimmed := strings.TrimRight(u, ".,:;)]}")
		return sources.RedactURL(trimmed) + u[len(trimmed):]
	})
}

// holdKind says in words why someone is held back.
func holdKind(kind string) string {
	switch kind {
	case engine.HoldUnknown:
		return "unknown to Entra"
	case engine.HoldThrottle:
		return "throttled"
	case engine.HoldRetry:
		return "retrying"
	case engine.HoldRefused:
		return "refused by Graph"
	case engine.HoldOperator:
		return "cleared by operator"
	case engine.HoldPaused:
		return "paused"
	}
	return kind
}

// relative says how far t is from now: "in 5m", "3m ago", "now".
func relative(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := t.Sub(now)
	past := d < 0
	if past {
		d = -d
	}
	var s string
	switch {
	case d < time.Second:
		return "now"
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		s = fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
	if past {
		return s + " ago"
	}
	return "in " + s
}
