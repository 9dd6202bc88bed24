package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/sources/ical"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/plan"
)

// recordingFetcher remembers whether each request was conditional.
type recordingFetcher struct {
	*fakeFeeds
	mu          sync.Mutex
	conditional []bool
}

func (r *recordingFetcher) Fetch(ctx context.Context, req sources.FetchRequest) (sources.FetchResult, error) {
	r.mu.Lock()
	r.conditional = append(r.conditional, req.PrevHash != [32]byte{})
	r.mu.Unlock()
	return r.fakeFeeds.Fetch(ctx, req)
}

// memFeedCache is a FeedCache in memory that counts its writes.
type memFeedCache struct {
	mu      sync.Mutex
	feeds   map[string]state.Feed
	singles int
	batches []int
	fail    error // every write fails with it
}

func (c *memFeedCache) Feed(source string) (state.Feed, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.feeds[source]
	return f, ok, nil
}

func (c *memFeedCache) PutFeed(f state.Feed) error {
	c.mu.Lock()
	c.singles++
	c.mu.Unlock()
	return c.PutFeeds([]state.Feed{f})
}

func (c *memFeedCache) PutFeeds(fs []state.Feed) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	c.batches = append(c.batches, len(fs))
	for _, f := range fs {
		c.feeds[f.Source] = f
	}
	return nil
}

func (c *memFeedCache) FeedHeads() ([]state.Feed, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	heads := make([]state.Feed, 0, len(c.feeds))
	for _, f := range c.feeds {
		f.Body = nil
		heads = append(heads, f)
	}
	return heads, nil
}

// dropExpansions makes the copies as an earlier release stored them:
// without their occurrences.
func (c *memFeedCache) dropExpansions() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, f := range c.feeds {
		f.Expansion = state.Expansion{}
		c.feeds[name] = f
	}
}

func (c *memFeedCache) DeleteFeedsExcept(sources []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.feeds {
		if !slices.Contains(sources, name) {
			delete(c.feeds, name)
		}
	}
	return nil
}

func TestDryRunStaleFeedFetchedInFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		cfg := testConfig()
		cfg.Schedule.Horizon = 2 * time.Hour // expanded again after at most an hour
		feeds := &fakeFeeds{bodies: map[string]string{"zoom": ics(now, "a", 10*time.Minute, 5*time.Hour)}, errs: map[string]error{}}
		rf := &recordingFetcher{fakeFeeds: feeds}
		eng, err := New(Options{Config: cfg, Presence: &testutil.Presence{}, Store: NewMemStore(), Fetcher: rf})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for range 2 {
			if err := eng.FirstPass(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Hour) // the window has slid
		}
		if got := fmt.Sprint(rf.conditional); got != "[false false]" {
			t.Errorf("conditional requests without a feed cache, window slid = %s; want [false false]", got)
		}
		if _, st := eng.Ready(); len(st) != 1 || st[0].Occurrences != 1 {
			t.Errorf("Ready() = %+v; want zoom with 1 occurrence", st)
		}

		// With a fresh window the copy in hand is checked conditionally.
		cfg = testConfig()
		rf = &recordingFetcher{fakeFeeds: feeds}
		eng, err = New(Options{Config: cfg, Presence: &testutil.Presence{}, Store: NewMemStore(), Fetcher: rf})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := eng.FirstPass(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got := fmt.Sprint(rf.conditional); got != "[false true]" {
			t.Errorf("conditional requests without a feed cache = %s; want [false true]", got)
		}
	})
}

func TestPollAllStoresCopiesInBatches(t *testing.T) {
	now := time.Now()
	cfg := testConfig()
	feeds := &fakeFeeds{bodies: map[string]string{}, errs: map[string]error{}}
	cfg.Sources = nil
	const n = 150
	for i := range n {
		name := fmt.Sprintf("feed-%03d", i)
		cfg.Sources = append(cfg.Sources, config.Source{Name: name, URL: "https://example.test/" + name, Users: []string{alice}, PollInterval: time.Minute})
		feeds.bodies[name] = ics(now, name, time.Duration(i)*time.Minute, 30*time.Minute)
	}
	cache := &memFeedCache{feeds: map[string]state.Feed{}}
	eng, err := New(Options{Config: cfg, Presence: &testutil.Presence{}, Store: NewMemStore(), Feeds: cache, Fetcher: feeds})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.FirstPass(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Every copy is stored by the time the pass returns.
	if len(cache.feeds) != n {
		t.Errorf("after FirstPass, %d copies stored; want %d", len(cache.feeds), n)
	}
	if cache.singles != 0 {
		t.Errorf("FirstPass stored %d copies one by one; want all in batches", cache.singles)
	}
	for _, b := range cache.batches {
		if b > feedBatch {
			t.Errorf("batch of %d copies; want at most %d", b, feedBatch)
		}
	}
	for name, f := range cache.feeds {
		if string(f.Body) != feeds.bodies[name] || f.URLHash != state.URLHash("https://example.test/"+name) {
			t.Errorf("stored copy of %s = %q (url hash %s); want the feed", name, f.Body, f.URLHash)
		}
	}
}

func TestCompact(t *testing.T) {
	line := "ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@example.com"
	atts := []ical.Attendee{{Email: line[len(line)-15:], PartStat: "ACCEPTED"}}
	occs := make([]ical.Occurrence, 3, 8)
	for i := range occs {
		occs[i] = ical.Occurrence{UID: "u1", Summary: "Sync", Description: "dial-in", Status: "CONFIRMED",
			Start: time.Unix(int64(i)*3600, 0), End: time.Unix(int64(i)*3600+1800, 0), Attendees: atts,
			MeetingKeys: []string{"zoom:83412345678"}}
	}
	for _, keep := range []bool{false, true} {
		got := compact(occs, keep)
		if len(got) != 3 || cap(got) != 3 {
			t.Fatalf("compact(3 occurrences) = len %d cap %d; want 3 and 3", len(got), cap(got))
		}
		for i, o := range got {
			want := occs[i]
			if !keep {
				want.Description = ""
			}
			if !sameOccurrence(o, want) {
				t.Errorf("compact(keepDescription=%v)[%d] = %+v; want %+v", keep, i, o, want)
			}
		}
		if &got[0].Attendees[0] != &got[2].Attendees[0] || &got[0].Attendees[0] == &atts[0] {
			t.Errorf("compact: attendees not shared between occurrences of one event, or not copied")
		}
	}
	if compact(nil, false) != nil {
		t.Error("compact(nil) != nil")
	}
}

func TestMatcherUsesDescription(t *testing.T) {
	cfg := testConfig()
	cfg.Sources = append(cfg.Sources,
		config.Source{Name: "inc", URL: "https://example.test/inc", Users: []string{alice}, Include: config.Filter{Description: "zoom"}},
		config.Source{Name: "exc", URL: "https://example.test/exc", Users: []string{alice}, Exclude: config.Filter{Description: "focus"}},
		config.Source{Name: "sum", URL: "https://example.test/sum", Users: []string{alice}, Include: config.Filter{Summary: "zoom"}})
	m, err := plan.NewMatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"zoom": false, "inc": true, "exc": true, "sum": false, "nope": false} {
		if got := m.UsesDescription(name); got != want {
			t.Errorf("usesDescription(%q) = %v; want %v", name, got, want)
		}
	}
}
