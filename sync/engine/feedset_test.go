package engine

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/sources/ical"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/mem"
	"github.com/google/go-cmp/cmp"
)

// feedHarness is the engine harness with a feed cache and zoom's body.
func feedHarness(t *testing.T, cfg *config.Config, body string) *harness {
	begin := time.Now()
	h := &harness{t: t, begin: begin, metrics: NewMetrics(nil), store: mem.New(),
		graph: &testutil.Presence{Begin: begin}, cache: &memFeedCache{feeds: map[string]state.Feed{}},
		feeds: &fakeFeeds{errs: map[string]error{}, bodies: map[string]string{"zoom": body}}}
	h.start(cfg)
	return h
}

// A feed that keeps failing still has its last good copy expanded as time
// moves on: a meeting beyond the first window (36 h) still comes due.
func TestFailingFeedCopyExpandedAsTimeMovesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		cfg := testConfig()
		cfg.Schedule.MaxCopyAge = 48 * time.Hour
		h := feedHarness(t, cfg, ics(begin, "later", 40*time.Hour, 30*time.Minute))
		h.until(30 * time.Second)
		h.feeds.fail("zoom", errors.New("connection refused"))
		h.until(41 * time.Hour)
		h.stop()
		h.want("40h0m0s set alice@contoso.com InAConferenceCall 30m0s")
	})
}

// Past max_copy_age, a failing feed's events that start later no longer
// count; one that started before runs on to its end. The source is
// reported stale, and its failures are logged at Warn every few minutes.
func TestFailingFeedPastMaxCopyAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		cfg := testConfig()
		cfg.Schedule.MaxCopyAge = 2 * time.Hour
		h := feedHarness(t, cfg, ics(begin,
			"a", 1*time.Hour, 30*time.Minute, // before the cutoff (2h)
			"b", 110*time.Minute, 40*time.Minute, // starts before, ends after it
			"c", 3*time.Hour, 30*time.Minute)) // starts after it
		h.until(30 * time.Second)
		// /readyz's plain answer (Readiness(false)) is kept between
		// changes: it must follow the failure, and the copy turning stale
		// with nothing else changing.
		if r := h.eng.Readiness(false); r.SourceCounts != (SourceCounts{Total: 1, Loaded: 1}) || len(r.Sources) != 0 {
			t.Errorf("at 30s: /readyz counts %+v, sources %+v; want 1 loaded, none listed", r.SourceCounts, r.Sources)
		}
		h.feeds.fail("zoom", errors.New("connection refused"))
		h.until(119 * time.Minute)
		if _, st := h.eng.Ready(); st[0].Stale || st[0].CopyAge != "1h59m0s" {
			t.Errorf("at 1h59m: status %+v; want not stale, copy_age 1h59m0s", st[0])
		}
		if r := h.eng.Readiness(false); r.SourceCounts != (SourceCounts{Total: 1, Loaded: 1, Failing: 1}) ||
			len(r.Sources) != 1 || r.Sources[0].CopyAge != "1h59m0s" || len(r.Degraded) != 1 {
			t.Errorf("at 1h59m: /readyz counts %+v, sources %+v, degraded %q; want zoom failing, listed, copy_age 1h59m0s", r.SourceCounts, r.Sources, r.Degraded)
		}
		h.until(2*time.Hour + 30*time.Second)
		if _, st := h.eng.Ready(); !st[0].Stale || st[0].CopyAge != "2h0m30s" {
			t.Errorf("at 2h0m30s: status %+v; want stale, copy_age 2h0m30s", st[0])
		}
		if r := h.eng.Readiness(false); r.SourceCounts != (SourceCounts{Total: 1, Loaded: 1, Failing: 1, Stale: 1}) ||
			len(r.Sources) != 1 || !r.Sources[0].Stale {
			t.Errorf("at 2h0m30s: /readyz counts %+v, sources %+v; want zoom failing and stale", r.SourceCounts, r.Sources)
		}
		h.until(2*time.Hour + 90*time.Second) // the metric follows at the next poll
		if got := feedValue(h.metrics, "calpresence_feed_stale", "zoom"); got != 1 {
			t.Errorf("calpresence_feed_stale{source=zoom} = %v; want 1", got)
		}
		h.until(4 * time.Hour)
		h.stop()
		h.want("1h0m0s set alice@contoso.com InAConferenceCall 30m0s",
			"1h50m0s set alice@contoso.com InAConferenceCall 40m0s")

		var warns, stale int
		for _, line := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "feed unreadable") ||
				strings.Contains(line, "feed still unreadable") && strings.Contains(line, `"level":"WARN"`) {
				warns++
			}
			if strings.Contains(line, "last good copy is stale") && strings.Contains(line, `"level":"WARN"`) {
				stale++
			}
		}
		// 240 failed polls in 4 hours: one Warn every 5 minutes.
		if warns < 45 || warns > 50 {
			t.Errorf("%d Warn lines for 240 failed polls in 4 h; want one every 5 minutes (45..50)", warns)
		}
		if stale != 1 {
			t.Errorf("%d Warn lines saying the copy went stale; want 1", stale)
		}
	})
}

// A feed whose polls hang records no failure: its copy turns stale with
// time alone, and /readyz's answer, kept between changes, says so.
func TestHangingFeedTurnsStaleOnReadyz(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		cfg := testConfig()
		cfg.Schedule.MaxCopyAge = 2 * time.Hour
		cfg.Schedule.FetchTimeout = 3 * time.Hour // a poll hangs past the copy's age
		h := feedHarness(t, cfg, ics(begin, "a", 5*time.Hour, 30*time.Minute))
		h.until(30 * time.Second)
		h.feeds.mu.Lock()
		h.feeds.hang = true
		h.feeds.mu.Unlock()
		h.until(90 * time.Second)
		if r := h.eng.Readiness(false); r.SourceCounts != (SourceCounts{Total: 1, Loaded: 1}) || len(r.Sources) != 0 {
			t.Errorf("at 90s: /readyz counts %+v, sources %+v; want 1 loaded, none listed", r.SourceCounts, r.Sources)
		}
		h.until(2*time.Hour + time.Minute)
		if r := h.eng.Readiness(false); r.SourceCounts != (SourceCounts{Total: 1, Loaded: 1, Stale: 1}) ||
			len(r.Sources) != 1 || !r.Sources[0].Stale || len(r.Degraded) != 1 {
			t.Errorf("at 2h1m: /readyz counts %+v, sources %+v, degraded %q; want zoom stale", r.SourceCounts, r.Sources, r.Degraded)
		}
		h.stop()
	})
}

// After a restart a months-old stored copy is not taken as fresh: while
// the feed cannot be read, its future meetings do not count.
func TestRestartWithOldCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		body := ics(begin, "m", 10*time.Minute, 30*time.Minute)
		cache := &memFeedCache{feeds: map[string]state.Feed{"zoom": {
			Source: "zoom", URLHash: state.URLHash(testConfig().Sources[0].URL), Hash: sha256.Sum256([]byte(body)),
			Body: []byte(body), FetchedAt: begin.Add(-90 * 24 * time.Hour),
		}}}
		h := &harness{t: t, begin: begin, metrics: NewMetrics(nil), store: mem.New(),
			graph: &testutil.Presence{Begin: begin}, cache: cache,
			feeds: &fakeFeeds{errs: map[string]error{}, bodies: map[string]string{}, hang: true}}
		h.start(testConfig())
		synctest.Wait()
		if ready, st := h.eng.Ready(); !ready || !st[0].Stale || !st[0].Loaded || st[0].Occurrences != 0 {
			t.Errorf("Ready() = %v, %+v; want ready, zoom loaded and stale with no occurrence", ready, st)
		}
		h.until(time.Hour)
		h.stop()
		h.want()
	})
}

// A 304 is applied only to the stored copy whose hash is the one in
// force: when the write of a new copy failed, the feed cache holds an
// older one, and the feed is fetched in full instead of re-expanding it.
func TestNotModifiedNeedsTheCopyInForceStored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		cfg := testConfig()
		cfg.Schedule.Horizon = 2 * time.Hour // expanded again after at most an hour
		v1 := ics(begin, "v1", 3*time.Hour, time.Hour)
		v2 := ics(begin, "v2", 3*time.Hour, time.Hour)
		feeds := &fakeFeeds{bodies: map[string]string{"zoom": v1}, errs: map[string]error{}}
		rf := &recordingFetcher{fakeFeeds: feeds}
		cache := &memFeedCache{feeds: map[string]state.Feed{}}
		eng, err := New(t.Context(), Options{Config: cfg, Presence: &testutil.Presence{}, Store: mem.New(), Feeds: cache, Fetcher: rf})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		pass := func() {
			t.Helper()
			if err := eng.FirstPass(ctx); err != nil {
				t.Fatal(err)
			}
		}
		pass() // v1, stored
		feeds.set("zoom", v2)
		cache.fail = errors.New("disk full")
		pass() // v2 in force, v1 still stored
		cache.fail = nil
		time.Sleep(2 * time.Hour) // due to be expanded again; v2 unchanged
		pass()
		matches, _ := eng.feeds.snapshot()
		if len(matches) != 1 || matches[0].Occ.UID != "v2" {
			t.Errorf("after the 304, matches = %+v; want v2's only", matches)
		}
		if string(cache.feeds["zoom"].Body) != v2 {
			t.Errorf("stored copy = %q; want v2", cache.feeds["zoom"].Body)
		}
		// The third read asked for the body: the stored copy was not v2.
		if got := rf.conditional; len(got) != 3 || got[2] {
			t.Errorf("conditional requests = %v; want the third unconditional", got)
		}
	})
}

// A feed over a cap is refused like a broken one: the last good copy stays
// in force and in the feed cache, and the source is reported.
func TestFeedOverACapIsRefused(t *testing.T) {
	now := time.Now()
	attendees := func(body string, n int) string {
		var b strings.Builder
		b.WriteString("SUMMARY:big")
		for i := range n {
			b.WriteString("\r\nATTENDEE:mailto:p" + string(rune('a'+i)) + "@contoso.com")
		}
		return strings.Replace(body, "SUMMARY:big", b.String(), 1)
	}
	tests := []struct {
		name    string
		limit   func(s *config.Schedule)
		match   bool
		bad     string
		wantErr string
	}{
		{"events", func(s *config.Schedule) { s.MaxFeedEvents = 2 },
			false, ics(now, "x", time.Hour, time.Hour, "y", 2*time.Hour, time.Hour, "z", 3*time.Hour, time.Hour),
			"3 VEVENTs, more than the 2 allowed: over the limit"},
		{"occurrences", func(s *config.Schedule) { s.MaxFeedOccurrences = 2 },
			false, strings.Replace(ics(now, "x", time.Hour, time.Minute), "SUMMARY:x", "SUMMARY:x\r\nRRULE:FREQ=MINUTELY;COUNT=3", 1),
			"more than 2 occurrences in the window: over the limit"},
		{"people", func(s *config.Schedule) { s.MaxFeedPeople = 2 },
			true, attendees(ics(now, "big", time.Hour, time.Hour), 3),
			"3 people matched, more than the 2 allowed: over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.limit(&cfg.Schedule)
			if tt.match {
				cfg.Sources[0].Users, cfg.Sources[0].Match, cfg.Sources[0].Domains = nil, "attendees", []string{"contoso.com"}
			}
			good := attendees(ics(now, "big", time.Hour, time.Hour), 1)
			feeds := &fakeFeeds{bodies: map[string]string{"zoom": good}, errs: map[string]error{}}
			cache := &memFeedCache{feeds: map[string]state.Feed{}}
			metrics := NewMetrics(nil)
			eng, err := New(t.Context(), Options{Config: cfg, Presence: &testutil.Presence{}, Store: mem.New(), Feeds: cache, Fetcher: feeds, Metrics: metrics})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := eng.FirstPass(ctx); err != nil {
				t.Fatal(err)
			}
			feeds.set("zoom", tt.bad)
			for range 2 { // the second time, the same body is refused unparsed
				err := eng.FirstPass(ctx)
				if !errors.Is(err, ical.ErrOverLimit) || !strings.HasSuffix(err.Error(), tt.wantErr) {
					t.Errorf("FirstPass() = %v; want an error ending %q, wrapping ical.ErrOverLimit", err, tt.wantErr)
				}
			}
			if _, st := eng.Ready(); st[0].Healthy || st[0].Occurrences != 1 || !strings.HasSuffix(st[0].LastError, tt.wantErr) {
				t.Errorf("Ready() = %+v; want zoom unhealthy with the last good copy's occurrence", st[0])
			}
			if got := string(cache.feeds["zoom"].Body); got != good {
				t.Errorf("stored copy = %q; want the last good copy", got)
			}
			if got := feedValue(metrics, "calpresence_feed_fetches_total", "zoom", "over_limit"); got != 2 {
				t.Errorf(`calpresence_feed_fetches_total{result="over_limit"} = %v; want 2`, got)
			}
		})
	}
}

// /readyz shows stale and copy_age only for the sources that need them.
func TestSourceStatusJSON(t *testing.T) {
	for _, tt := range []struct {
		st   SourceStatus
		want string
	}{
		{SourceStatus{Name: "a", Loaded: true, Healthy: true, Occurrences: 2},
			`{"name":"a","url":"","loaded":true,"healthy":true,"occurrences":2}`},
		{SourceStatus{Name: "b", Loaded: true, LastError: "timeout", Stale: true, CopyAge: "26h0m0s"},
			`{"name":"b","url":"","loaded":true,"healthy":false,"last_error":"timeout","occurrences":0,"stale":true,"copy_age":"26h0m0s"}`},
	} {
		got, err := json.Marshal(tt.st)
		if err != nil || string(got) != tt.want {
			t.Errorf("json.Marshal(%+v) = %s, %v; want %s", tt.st, got, err, tt.want)
		}
	}
}

// plan refuses a feed over max_feed_events, as the daemon does.
func TestPlanRefusesTooManyEvents(t *testing.T) {
	now := time.Now()
	cfg := testConfig()
	cfg.Schedule.MaxFeedEvents = 1
	feeds := &fakeFeeds{bodies: map[string]string{"zoom": ics(now, "x", time.Hour, time.Hour, "y", 2*time.Hour, time.Hour)}, errs: map[string]error{}}
	_, err := Plan(context.Background(), cfg, feeds, PlanRequest{From: now, To: now.Add(cfg.Schedule.Horizon)})
	if !errors.Is(err, ical.ErrOverLimit) {
		t.Errorf("Plan() error = %v; want one wrapping ical.ErrOverLimit", err)
	}
}

// inFlightFeeds is fakeFeeds counting the most fetches in flight at once;
// each takes a little while, so that overlapping ones do overlap.
type inFlightFeeds struct {
	*fakeFeeds
	mu       sync.Mutex
	now, max int
}

func (f *inFlightFeeds) Fetch(ctx context.Context, req sources.FetchRequest) (sources.FetchResult, error) {
	f.mu.Lock()
	f.now++
	f.max = max(f.max, f.now)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.now--
		f.mu.Unlock()
	}()
	time.Sleep(10 * time.Millisecond)
	return f.fakeFeeds.Fetch(ctx, req)
}

// plan reads at most schedule.fetch_concurrency feeds at once, as the
// daemon does.
func TestPlanHonoursFetchConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		cfg := testConfig()
		body := ics(now, "x", time.Hour, time.Hour)
		feeds := &inFlightFeeds{fakeFeeds: &fakeFeeds{bodies: map[string]string{}, errs: map[string]error{}}}
		cfg.Sources = nil
		for i := range 8 {
			name := fmt.Sprintf("feed%d", i)
			cfg.Sources = append(cfg.Sources, config.Source{Name: name, URL: "https://example.test/" + name, Users: []string{alice}, PollInterval: time.Minute})
			feeds.bodies[name] = body
		}
		for _, n := range []int{1, 3} {
			cfg.Schedule.FetchConcurrency = n
			feeds.max = 0
			if _, err := Plan(context.Background(), cfg, feeds, PlanRequest{From: now, To: now.Add(cfg.Schedule.Horizon)}); err != nil {
				t.Fatal(err)
			}
			if feeds.max != n {
				t.Errorf("fetch_concurrency %d: Plan had %d fetches in flight at most; want %d", n, feeds.max, n)
			}
		}
	})
}

// requestFeeds is fakeFeeds remembering each source's last request as the
// fetcher got it.
type requestFeeds struct {
	*fakeFeeds
	mu   sync.Mutex
	reqs map[string]sources.FetchRequest
}

func (f *requestFeeds) Fetch(ctx context.Context, req sources.FetchRequest) (sources.FetchResult, error) {
	f.mu.Lock()
	f.reqs[req.Name] = req
	f.mu.Unlock()
	return f.fakeFeeds.Fetch(ctx, req)
}

// flags returns, by source, what pick says of its last request.
func (f *requestFeeds) flags(pick func(sources.FetchRequest) bool) map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]bool, len(f.reqs))
	for name, req := range f.reqs {
		out[name] = pick(req)
	}
	return out
}

func allowPrivate(r sources.FetchRequest) bool { return r.AllowPrivate }

// A source's allow_private reaches the fetcher, in the daemon and in plan.
func TestAllowPrivateReachesFetcher(t *testing.T) {
	cfg := testConfig()
	cfg.Sources = append(cfg.Sources, config.Source{Name: "onprem", URL: "http://calendar.corp.example/feed.ics",
		Users: []string{alice}, PollInterval: time.Minute, AllowPrivate: true})
	want := map[string]bool{"zoom": false, "onprem": true}
	newFeeds := func(now time.Time) *requestFeeds {
		body := ics(now, "x", time.Hour, time.Hour)
		return &requestFeeds{reqs: map[string]sources.FetchRequest{},
			fakeFeeds: &fakeFeeds{bodies: map[string]string{"zoom": body, "onprem": body}, errs: map[string]error{}}}
	}

	t.Run("plan", func(t *testing.T) {
		now := time.Now()
		feeds := newFeeds(now)
		if _, err := Plan(context.Background(), cfg, feeds, PlanRequest{From: now, To: now.Add(cfg.Schedule.Horizon)}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, feeds.flags(allowPrivate)); diff != "" {
			t.Errorf("AllowPrivate by source (-want +got):\n%s", diff)
		}
	})
	t.Run("engine", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := &harness{t: t, begin: time.Now(), metrics: NewMetrics(nil), store: mem.New()}
			h.graph = &testutil.Presence{Begin: h.begin}
			feeds := newFeeds(h.begin)
			h.feeds = feeds.fakeFeeds
			h.startWith(cfg, func(o *Options) { o.Fetcher = feeds }, nil)
			h.until(30 * time.Second)
			h.stop()
			if diff := cmp.Diff(want, feeds.flags(allowPrivate)); diff != "" {
				t.Errorf("AllowPrivate by source (-want +got):\n%s", diff)
			}
		})
	})
}
