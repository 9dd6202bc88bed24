package server

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

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
	// rel is replaced per request with one relative to the snapshot.
	"rel": func(time.Time) string { return "" },
}).Parse(statusHTML))

// serveStatus renders the status page.
func serveStatus(eng Engine, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st := eng.Status(r.Context(), time.Now())
		t, err := statusPage.Clone()
		if err == nil {
			t = t.Funcs(template.FuncMap{"rel": func(at time.Time) string { return relative(at, st.Now) }})
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
