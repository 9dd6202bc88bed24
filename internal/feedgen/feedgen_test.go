package feedgen

import (
	"bytes"
	"testing"
	"time"

	"github.com/calpresence/calpresence/sources/ical"
)

func TestFeedsParse(t *testing.T) {
	now := time.Now()
	for _, st := range []string{"zoom", "webex", "outlook", "google"} {
		g := &Generator{Seed: 1, Meetings: 50, Base: now.UTC().Truncate(24 * time.Hour), Style: st}
		var events, occs, size int
		for i := range 8 {
			data := g.Feed(nil, i)
			size += len(data)
			res, err := ical.ParseExpand(data, ical.ExpandOptions{From: now.Add(-time.Hour), To: now.Add(36 * time.Hour)})
			if err != nil {
				t.Fatalf("ParseExpand(%s feed %d) error: %v", st, i, err)
			}
			if len(res.Warnings) > 0 {
				t.Errorf("ParseExpand(%s feed %d) warnings %q; want none", st, i, res.Warnings)
			}
			events += res.Events
			occs += len(res.Occurrences)
		}
		t.Logf("%s: %d bytes per meeting, %d VEVENTs and %d occurrences in 37 h per feed", st, size/(8*50), events/8, occs/8)
		// Each meeting is one VEVENT, plus an override for some.
		if events < 8*50 || events > 8*50*5/4 {
			t.Errorf("%s: %d VEVENTs in 8 feeds of 50 meetings; want 400..500", st, events)
		}
		if perMeeting := size / (8 * 50); perMeeting < 1200 || perMeeting > 2300 {
			t.Errorf("%s: %d bytes per meeting; want about 1.75 KB", st, perMeeting)
		}
		if perFeed := occs / 8; perFeed < 5 || perFeed > 50 {
			t.Errorf("%s: %d occurrences per feed in 37 h; want 5..50", st, perFeed)
		}
	}
}

func TestFeedsDeterministic(t *testing.T) {
	g := &Generator{Seed: 7, Meetings: 20, Base: time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC), Style: "mixed"}
	if a, b := g.Feed(nil, 3), g.Feed(nil, 3); !bytes.Equal(a, b) {
		t.Error("feed(3) differs between two calls; want the same bytes")
	}
	if a, b := g.Feed(nil, 3), g.Feed(nil, 4); bytes.Equal(a, b) {
		t.Error("feed(3) = feed(4); want different feeds")
	}
}

// TestFeedsHistory: past meetings add VEVENTs and bytes, never an
// occurrence in the window, and leave the other meetings as they were.
func TestFeedsHistory(t *testing.T) {
	base := time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC) // a Wednesday
	opt := ical.ExpandOptions{From: base.Add(11 * time.Hour), To: base.Add(48 * time.Hour)}
	for _, st := range []string{"zoom", "webex", "outlook", "google"} {
		g := &Generator{Seed: 3, Meetings: 10, Base: base, Style: st}
		h := *g
		h.History = 300
		live, past := g.Feed(nil, 1), h.Feed(nil, 1)
		if !bytes.HasPrefix(past, bytes.TrimSuffix(live, []byte("END:VCALENDAR\r\n"))) {
			t.Errorf("%s: the feed with history does not start with the one without", st)
		}
		want, err := ical.ParseExpand(live, opt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ical.ParseExpand(past, opt)
		if err != nil {
			t.Fatal(err)
		}
		if got.Events != want.Events+300 || len(got.Warnings) > 0 {
			t.Errorf("%s with 300 past meetings: %d VEVENTs, warnings %q; want %d, none", st, got.Events, got.Warnings, want.Events+300)
		}
		if len(got.Occurrences) != len(want.Occurrences) {
			t.Errorf("%s with 300 past meetings: %d occurrences in the window; want %d, as without", st, len(got.Occurrences), len(want.Occurrences))
		}
		wide, err := ical.ParseExpand(past, ical.ExpandOptions{From: base.AddDate(-1, 0, 0), To: base})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(wide.Occurrences); n < 300 {
			t.Errorf("%s: %d occurrences in the year before; want the 300 past meetings at least", st, n)
		}
		if per := (len(past) - len(live)) / 300; per < 900 || per > 2300 {
			t.Errorf("%s: %d bytes per past meeting; want about 1-2 KB", st, per)
		}
		t.Logf("%s: %d bytes per past meeting", st, (len(past)-len(live))/300)
	}
}
