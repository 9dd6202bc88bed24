package engine

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state/mem"
)

// TestPerson: a person's own view holds their spans within the next 36
// hours (a meeting beyond is left out, one already over too), the
// meetings that make them, and the live signals about them — and nothing
// of anybody else's.
func TestPerson(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const bob = "bob@contoso.com"
		cfg := signalConfig()
		cfg.Sources[0].Users = []string{alice}
		cfg.Sources = append(cfg.Sources, config.Source{Name: "bob", URL: "https://example.test/bob.ics", Users: []string{bob}, PollInterval: time.Minute})
		begin := time.Now()
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{
			"zoom": ics(begin, "Standup", 10*minute, 15*minute, "Retro", 3*time.Hour, time.Hour, "Far", 40*time.Hour, time.Hour),
			"bob":  ics(begin, "Bob-only", 20*minute, time.Hour),
		}, errs: map[string]error{}}, graph: &testutil.Presence{Begin: begin}, store: mem.New(), begin: begin, metrics: NewMetrics(nil)}
		h.start(cfg)
		h.until(30 * minute)
		h.presenceAt(carol, signals.ZoomOnPhoneCall, 30*minute)
		h.until(31 * minute)

		spans := func(v PersonView) []string {
			var out []string
			for _, s := range v.Spans {
				for _, m := range s.Meetings {
					out = append(out, fmt.Sprintf("%v-%v %s %s/%s", s.Start.Sub(begin), s.End.Sub(begin), s.Activity, m.Source, m.Summary))
				}
			}
			return out
		}
		now := time.Now()
		a := h.eng.Person(t.Context(), alice, now)
		if diff := cmp.Diff([]string{"3h0m0s-4h0m0s InAConferenceCall zoom/Retro"}, spans(a)); diff != "" {
			t.Errorf("Person(alice).Spans (-want +got):\n%s", diff)
		}
		if a.UPN != alice || len(a.Live) != 0 {
			t.Errorf("Person(alice) = UPN %q, Live %+v; want %s and no live signal", a.UPN, a.Live, alice)
		}
		b := h.eng.Person(t.Context(), bob, now)
		if diff := cmp.Diff([]string{"20m0s-1h20m0s InAConferenceCall bob/Bob-only"}, spans(b)); diff != "" {
			t.Errorf("Person(bob).Spans (-want +got):\n%s", diff)
		}
		c := h.eng.Person(t.Context(), "carol@contoso.com", now)
		if len(c.Live) != 1 || c.Live[0].Status != signals.ZoomOnPhoneCall || len(c.Spans) != 1 || c.Spans[0].Activity != "InACall" {
			t.Errorf("Person(carol) = %+v; want her phone call, live and as a span", c)
		}
		if n := h.eng.Person(t.Context(), "nobody@contoso.com", now); len(n.Spans)+len(n.Live) != 0 {
			t.Errorf("Person(nobody) = %+v; want nothing", n)
		}
		h.stop()
	})
}
