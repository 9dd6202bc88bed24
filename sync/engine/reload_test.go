package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/mem"
	"github.com/calpresence/calpresence/sync/plan"
)

const bob = "bob@contoso.com"

// withSource returns cfg with a further source of fixed users.
func withSource(cfg *config.Config, name string, users ...string) *config.Config {
	cfg.Sources = append(cfg.Sources, config.Source{Name: name, URL: "https://example.test/" + name + ".ics", Users: users, PollInterval: time.Minute})
	return cfg
}

// reload reloads h's engine with cfg and fails the test on an error.
func (h *harness) reload(cfg *config.Config) ReloadReport {
	h.t.Helper()
	r, err := h.eng.Reload(context.Background(), cfg)
	if err != nil {
		h.t.Fatalf("Reload = %v", err)
	}
	synctest.Wait()
	return r
}

func sourceNames(eng *Engine) []string {
	var out []string
	for _, s := range eng.Readiness(true).Sources {
		out = append(out, s.Name)
	}
	return out
}

func TestReloadAddsSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		h := startHarness(t, testConfig(), ics(begin), nil, nil)
		h.feeds.set("webex", ics(begin, "w", time.Duration(0), time.Hour))
		h.until(5 * time.Minute)
		r := h.reload(withSource(testConfig(), "webex", bob))
		if !slices.Equal(r.Added, []string{"webex"}) || r.Unchanged != 1 || len(r.Removed)+len(r.Changed) != 0 {
			t.Errorf("Reload = %+v; want webex added, zoom unchanged", r)
		}
		h.until(10 * time.Minute)
		h.stop()
		h.want("5m0s set " + bob + " InAConferenceCall 55m0s")
		if got := sourceNames(h.eng); !slices.Equal(got, []string{"webex", "zoom"}) {
			t.Errorf("sources = %v; want [webex zoom]", got)
		}
		if !strings.Contains(h.logs.String(), `"msg":"configuration reloaded","added":1,"removed":0,"changed":0,"unchanged":1`) {
			t.Errorf("no reload log line with the counts:\n%s", h.logs.String())
		}
	})
}

func TestReloadRemovesSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{}, errs: map[string]error{}},
			graph: &testutil.Presence{Begin: begin}, store: mem.New(), begin: begin, metrics: NewMetrics(nil),
			cache: &memFeedCache{feeds: map[string]state.Feed{}}}
		h.feeds.set("zoom", ics(begin, "z", time.Duration(0), time.Hour))
		h.feeds.set("webex", ics(begin, "w", time.Duration(0), time.Hour))
		h.start(withSource(testConfig(), "webex", bob))
		h.until(10 * time.Minute)
		if _, ok, _ := h.cache.Feed(t.Context(), "webex"); !ok {
			t.Fatal("no stored copy of webex before the reload")
		}
		r := h.reload(testConfig())
		if !slices.Equal(r.Removed, []string{"webex"}) || r.Unchanged != 1 {
			t.Errorf("Reload = %+v; want webex removed, zoom unchanged", r)
		}
		h.until(20 * time.Minute)
		h.stop()
		got := h.graph.Got()
		if len(got) >= 2 {
			slices.Sort(got[:2]) // sent at once, in any order
		}
		want := []string{"0s set " + alice + " InAConferenceCall 1h0m0s", "0s set " + bob + " InAConferenceCall 1h0m0s",
			"10m0s clear " + bob}
		if !slices.Equal(got, want) {
			t.Errorf("Graph calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if got := h.reasons(); !slices.Contains(got, "clear "+plan.ReasonSourceRemoved) {
			t.Errorf("presence changes logged = %q; want a clear %s", got, plan.ReasonSourceRemoved)
		}
		if _, ok, _ := h.cache.Feed(t.Context(), "webex"); ok {
			t.Error("the stored copy of the removed source is still there")
		}
		if got := sourceNames(h.eng); !slices.Equal(got, []string{"zoom"}) {
			t.Errorf("sources = %v; want [zoom]", got)
		}
	})
}

func TestReloadChangesURL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		h := startHarness(t, testConfig(), ics(begin, "old", 10*time.Minute, 30*time.Minute), nil, nil)
		h.feeds.set("https://example.test/other.ics", ics(begin, "new", 20*time.Minute, 30*time.Minute))
		h.until(5 * time.Minute)
		cfg := testConfig()
		cfg.Sources[0].URL = "https://example.test/other.ics"
		r := h.reload(cfg)
		if !slices.Equal(r.Changed, []string{"zoom"}) {
			t.Errorf("Reload = %+v; want zoom changed", r)
		}
		h.until(time.Hour)
		h.stop()
		// The old feed's meeting at 10m is gone with its URL.
		h.want("20m0s set " + alice + " InAConferenceCall 30m0s")
	})
}

func TestReloadLeavesBusyPeopleAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		h := startHarness(t, testConfig(), ics(begin, "z", time.Duration(0), 2*time.Hour), nil, nil)
		h.feeds.set("webex", ics(begin, "w", time.Duration(0), time.Hour))
		h.until(10 * time.Minute)
		reads := func() int { h.feeds.mu.Lock(); defer h.feeds.mu.Unlock(); return h.feeds.reads }
		before := reads()
		// Another source added, the defaults of settings that apply at the
		// next reconcile changed: alice's span is the same.
		cfg := withSource(testConfig(), "webex", bob)
		cfg.Presence.MaxLease = 3 * time.Hour
		cfg.Presence.MergeGap = 5 * time.Minute
		r := h.reload(cfg)
		if r.Unchanged != 1 {
			t.Errorf("Reload = %+v; want zoom unchanged", r)
		}
		if got := reads() - before; got != 1 {
			t.Errorf("feeds read at the reload = %d; want 1 (only the new source)", got)
		}
		h.until(time.Hour + 30*time.Minute)
		h.stop()
		h.want("0s set "+alice+" InAConferenceCall 2h0m0s", "10m0s set "+bob+" InAConferenceCall 50m0s")
	})
}

func TestReloadChangedSourceKeepsBusyPerson(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		h := startHarness(t, testConfig(), ics(begin, "z", time.Duration(0), time.Hour), nil, nil)
		h.until(10 * time.Minute)
		cfg := testConfig()
		cfg.Sources[0].Exclude = config.Filter{Summary: "(?i)focus time"} // excludes nothing here
		cfg.Sources[0].PollInterval = 2 * time.Minute
		r := h.reload(cfg)
		if !slices.Equal(r.Changed, []string{"zoom"}) {
			t.Errorf("Reload = %+v; want zoom changed", r)
		}
		h.until(30 * time.Minute)
		h.stop()
		h.want("0s set " + alice + " InAConferenceCall 1h0m0s")
	})
}

func TestReloadRefusesInvalidConfig(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		h := startHarness(t, testConfig(), ics(begin, "z", time.Duration(0), time.Hour), nil, nil)
		h.until(10 * time.Minute)
		cfg := withSource(testConfig(), "webex", bob)
		cfg.Sources[1].Include = config.Filter{Summary: "(unclosed"}
		if _, err := h.eng.Reload(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "sources[1].include.summary") {
			t.Errorf("Reload = %v; want an error naming sources[1].include.summary", err)
		}
		h.until(20 * time.Minute)
		h.stop()
		h.want("0s set " + alice + " InAConferenceCall 1h0m0s")
		if got := sourceNames(h.eng); !slices.Equal(got, []string{"zoom"}) {
			t.Errorf("sources = %v; want [zoom] (the configuration in force)", got)
		}
	})
}

func TestReloadReportsRestartKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testConfig(), ics(time.Now()), nil, nil)
		h.until(time.Minute)
		cfg := testConfig()
		cfg.Graph.MaxConcurrency = 8
		cfg.Presence.Grace = time.Minute
		r := h.reload(cfg)
		if !slices.Equal(r.NeedsRestart, []string{"graph.max_concurrency"}) || !slices.Equal(r.Changed, []string{"zoom"}) {
			t.Errorf("Reload = %+v; want graph.max_concurrency needing a restart, zoom changed (its grace)", r)
		}
		h.stop()
		if !strings.Contains(h.logs.String(), "configuration changes not applied until a restart") {
			t.Error("no warning about the keys that need a restart")
		}
	})
}

// TestReloadChangedSourceKeepsCopyWhileFailing: a source changed but at
// the same URL keeps its last good copy when the read the reload starts
// fails; its person stays busy, with no Graph call.
func TestReloadChangedSourceKeepsCopyWhileFailing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{}, errs: map[string]error{}},
			graph: &testutil.Presence{Begin: begin}, store: mem.New(), begin: begin, metrics: NewMetrics(nil),
			cache: &memFeedCache{feeds: map[string]state.Feed{}}}
		h.feeds.set("zoom", ics(begin, "z", time.Duration(0), time.Hour))
		h.start(testConfig())
		h.until(10 * time.Minute)
		h.feeds.fail("zoom", errors.New("HTTP 503"))
		cfg := testConfig()
		cfg.Sources[0].Exclude = config.Filter{Summary: "(?i)focus time"}
		if r := h.reload(cfg); !slices.Equal(r.Changed, []string{"zoom"}) {
			t.Errorf("Reload = %+v; want zoom changed", r)
		}
		h.until(30 * time.Minute)
		st := h.eng.Readiness(true).Sources
		if len(st) != 1 || !st[0].Loaded || st[0].Healthy || st[0].Occurrences != 1 {
			t.Errorf("source after the failed read = %+v; want its copy in force, failing", st)
		}
		h.stop()
		h.want("0s set " + alice + " InAConferenceCall 1h0m0s")
	})
}

// TestReloadAddedSourceHoldsNoClear: a match source added by a reload
// whose feed cannot be read does not keep anyone from being cleared.
func TestReloadAddedSourceHoldsNoClear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		h := startHarness(t, testConfig(), ics(begin, "z", time.Duration(0), time.Hour), nil, nil)
		h.feeds.fail("team", errors.New("HTTP 404"))
		h.until(10 * time.Minute)
		cfg := testConfig()
		cfg.Sources = append(cfg.Sources, config.Source{Name: "team", URL: "https://example.test/team.ics", Match: "attendees", PollInterval: time.Minute})
		h.reload(cfg)
		h.feeds.set("zoom", ics(begin)) // alice's meeting cancelled
		h.until(12 * time.Minute)
		h.stop()
		h.want("0s set "+alice+" InAConferenceCall 1h0m0s", "11m0s clear "+alice)
	})
}
