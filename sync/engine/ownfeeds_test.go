package engine

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/mem"
	"github.com/calpresence/calpresence/sync/plan"
)

// openPlain is the tests' OwnFeedURL: the "sealed" URL is the URL, and
// one that begins with "bad" does not open.
func openPlain(f state.OwnFeed) (string, error) {
	if strings.HasPrefix(string(f.Sealed), "bad") {
		return "", errors.New("own feed " + f.ID + ": does not open")
	}
	return string(f.Sealed), nil
}

// TestOwnFeeds: a person's own feed in the store is polled (public
// addresses only) as a source for that person alone: bob is set for its
// meeting; the status view counts it without listing it as a source, and
// bob's view lists it redacted; a feed that does not open is left out
// with a warning; removed by another replica (straight from the shared
// store), it is dropped within InboxEvery and bob is cleared.
func TestOwnFeeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const bob = "bob@contoso.com"
		ctx := context.Background()
		store := mem.New()
		for _, f := range []state.OwnFeed{
			{ID: "f1", Person: bob, Address: "Bob@Contoso.com", Sealed: []byte("https://calendar.example/calendar/ical/private-0123456789abcdef0123/basic.ics")},
			{ID: "f2", Person: bob, Address: "Bob@Contoso.com", Sealed: []byte("bad seal")},
		} {
			if err := store.PutOwnFeed(ctx, f); err != nil {
				t.Fatal(err)
			}
		}
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{"zoom": ics(time.Now())}, errs: map[string]error{}},
			store: store, begin: time.Now(), metrics: NewMetrics(nil)}
		h.graph = &testutil.Presence{Begin: h.begin}
		h.feeds.set(OwnFeedSource("f1"), ics(h.begin, "b", 10*minute, 30*minute))
		rec := &requestFeeds{fakeFeeds: h.feeds, reqs: map[string]sources.FetchRequest{}}
		h.startWith(testConfig(), func(o *Options) {
			o.OwnFeedURL = openPlain
			o.Fetcher = rec
			o.Logger = slog.New(slog.NewJSONHandler(&h.logs, nil))
		}, nil)
		h.until(15 * minute)
		public := rec.flags(func(r sources.FetchRequest) bool { return r.PublicOnly })
		if pub, ok := public[OwnFeedSource("f1")]; !ok || !pub || public["zoom"] {
			t.Errorf("fetches PublicOnly = %v; want own:f1 public only, zoom not", public)
		}
		st := h.eng.Status(ctx, time.Now())
		for _, s := range st.Sources {
			if strings.HasPrefix(s.Name, OwnFeedPrefix) {
				t.Errorf("Status().Sources lists own feed %+v", s)
			}
		}
		if len(st.OwnFeeds) != 1 || st.OwnFeeds[0].User != bob || st.OwnFeeds[0].Feeds != 1 || st.OwnFeeds[0].Failing != 0 {
			t.Errorf("Status().OwnFeeds = %+v; want bob with 1", st.OwnFeeds)
		}
		pv := h.eng.Person(ctx, bob, time.Now())
		if len(pv.OwnFeeds) != 1 || pv.OwnFeeds[0].Name != "own:f1" || strings.Contains(pv.OwnFeeds[0].URL, "0123456789abcdef") || !pv.OwnFeeds[0].Healthy {
			t.Errorf("Person(bob).OwnFeeds = %+v; want own:f1 healthy, redacted", pv.OwnFeeds)
		}
		if len(pv.Spans) != 1 || pv.Spans[0].Meetings[0].Source != "own:f1" {
			t.Errorf("Person(bob).Spans = %+v; want the own feed's meeting", pv.Spans)
		}
		if !strings.Contains(h.logs.String(), `"msg":"own feed left out","feed":"own:f2"`) {
			t.Errorf("no warning for the feed that does not open; logs:\n%s", h.logs.String())
		}
		if err := store.DeleteOwnFeed(ctx, "f1"); err != nil {
			t.Fatal(err)
		}
		h.until(15*minute + InboxEvery + time.Second)
		if st := h.eng.Status(ctx, time.Now()); len(st.OwnFeeds) != 0 {
			t.Errorf("Status().OwnFeeds after the delete = %+v; want none", st.OwnFeeds)
		}
		h.until(time.Hour)
		h.stop()
		h.want("10m0s set bob@contoso.com InAConferenceCall 30m0s", "15m2s clear bob@contoso.com")
	})
}

// TestOwnFeedTitlesStayPrivate: the title of a meeting from a person's own
// feed is not on the status view (ops), nor in a status message
// (everyone); the same meeting from a configured source is.
func TestOwnFeedTitlesStayPrivate(t *testing.T) {
	own := plan.Match{User: alice, Occ: &plan.Occurrence{UID: "u", Summary: "Doctor", Start: t0, End: t0.Add(time.Hour)}, Rule: &plan.Rule{Source: OwnFeedSource("f1")}}
	team := plan.Match{User: alice, Occ: &plan.Occurrence{UID: "u", Summary: "Weekly sync", Start: t0, End: t0.Add(time.Hour)}, Rule: &plan.Rule{Source: "zoom"}}
	idx := occIndex([]plan.Match{own, team})
	if got := idx[refKey(own.Source, "u", time.Time{}, t0)].summary; got != OwnFeedSummary {
		t.Errorf("status view summary of the own feed's meeting = %q; want %q", got, OwnFeedSummary)
	}
	if got := idx[refKey("zoom", "u", time.Time{}, t0)].summary; got != "Weekly sync" {
		t.Errorf("status view summary of the configured meeting = %q; want Weekly sync", got)
	}
	const tmpl = "In {vendor}: {title} until {end}"
	if got := fillMessage(tmpl, &own, t0.Add(time.Hour), time.UTC); got != "In calendar:  until 16:00" {
		t.Errorf("status message for the own feed's meeting = %q; want no title and no source name", got)
	}
	if got := fillMessage(tmpl, &team, t0.Add(time.Hour), time.UTC); got != "In zoom: Weekly sync until 16:00" {
		t.Errorf("status message for the configured meeting = %q", got)
	}
}
