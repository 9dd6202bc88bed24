package feedgen

import (
	"bytes"
	"testing"
	"time"

	"github.com/calpresence/calpresence/sources"
)

func TestFeedsParse(t *testing.T) {
	now := time.Now()
	for _, st := range []string{"zoom", "webex", "outlook", "google"} {
		g := &Generator{Seed: 1, Meetings: 50, Base: now.UTC().Truncate(24 * time.Hour), Style: st}
		var events, occs, size int
		for i := range 8 {
			data := g.Feed(nil, i)
			size += len(data)
			res, err := sources.ParseExpand(data, sources.ExpandOptions{From: now.Add(-time.Hour), To: now.Add(36 * time.Hour)})
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
