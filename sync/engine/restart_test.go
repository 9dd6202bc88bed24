package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/feedgen"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/mem"
	"github.com/calpresence/calpresence/sync/plan"
)

// copyReads is a feed cache that records which sources' copies (bodies)
// are read.
type copyReads struct {
	*memFeedCache
	mu    sync.Mutex
	reads []string
}

func (c *copyReads) Feed(ctx context.Context, source string) (state.Feed, bool, error) {
	c.mu.Lock()
	c.reads = append(c.reads, source)
	c.mu.Unlock()
	return c.memFeedCache.Feed(ctx, source)
}

func (c *copyReads) read() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reads)
}

// restartHarness runs alice's meeting (zoom, 1h to 1h3m, a 5 min lease)
// and bob's (webex, from 1h2m for 30 min), stops the worker at 1h1m with
// both copies stored, lets edit change the stored copies, and starts it
// again at restartAt with every feed hanging.
func restartHarness(t *testing.T, restartAt time.Duration, cfg2 *config.Config, edit func(*memFeedCache)) (*harness, *copyReads) {
	begin := time.Now()
	cfg := testConfig()
	cfg.Sources = append(cfg.Sources, config.Source{Name: "webex", URL: "https://example.test/webex.ics",
		Users: []string{"bob@contoso.com"}, PollInterval: time.Minute})
	cache := &memFeedCache{feeds: map[string]state.Feed{}}
	h := &harness{t: t, begin: begin, metrics: NewMetrics(nil), store: mem.New(),
		graph: &testutil.Presence{Begin: begin}, cache: cache,
		feeds: &fakeFeeds{errs: map[string]error{}, bodies: map[string]string{
			"zoom":  ics(begin, "a", 60*time.Minute, 3*time.Minute),
			"webex": ics(begin, "b", 62*time.Minute, 30*time.Minute),
		}}}
	h.start(cfg)
	h.until(61 * time.Minute)
	h.stop()
	if edit != nil {
		edit(cache)
	}
	h.feeds.mu.Lock()
	h.feeds.hang = true
	h.feeds.mu.Unlock()
	reads := &copyReads{memFeedCache: cache}
	h.cache = reads
	h.until(restartAt)
	if cfg2 == nil {
		cfg2 = cfg
	}
	h.start(cfg2)
	return h, reads
}

// Killed mid-meeting, restarted while the feeds hang: the meeting that
// ended while the worker was down is cleared and the one that began is set
// at once, from the occurrences stored with each copy and the sessions,
// the engine is ready, and no copy is read or parsed to do it.
func TestEngineRestartWhileFeedsHang(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, reads := restartHarness(t, 64*time.Minute, nil, nil)
		synctest.Wait()
		if ready, st := h.eng.Ready(); !ready || !st[0].Loaded || !st[1].Loaded {
			t.Errorf("Ready() = %v, %+v; want ready with both sources loaded", ready, st)
		}
		h.until(70 * time.Minute)
		h.stop()
		got := h.graph.Got()
		slices.Sort(got[1:])
		want := []string{
			"1h0m0s set alice@contoso.com InAConferenceCall 5m0s",
			"1h4m0s clear alice@contoso.com",
			"1h4m0s set bob@contoso.com InAConferenceCall 28m0s",
		}
		if !slices.Equal(got, want) {
			t.Errorf("Graph calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if r := reads.read(); len(r) != 0 {
			t.Errorf("copies read at the restart: %v; want none (their stored occurrences serve)", r)
		}
		if n := strings.Count(h.logs.String(), `"msg":"stored copies loaded","sources":2,"from_stored_occurrences":2,"parsed":0`); n != 1 {
			t.Errorf("start-up logged %d summaries saying both sources loaded from their stored occurrences, none parsed; want 1:\n%s", n, h.logs.String())
		}
	})
}

// Stored occurrences that cannot serve are not used: the copy is parsed
// instead, and presence comes out the same.
func TestRestartParsesWhenStoredOccurrencesCannotServe(t *testing.T) {
	for _, tt := range []struct {
		name      string
		restartAt time.Duration
		cfg       func() *config.Config // nil: the same configuration
		edit      func(*memFeedCache)
		want      []string
		logs      string
	}{{
		name: "settings changed", restartAt: 64 * time.Minute,
		cfg: func() *config.Config {
			cfg := testConfig()
			cfg.Schedule.MaxOccurrences = 999 // another cap: another expansion
			cfg.Sources = append(cfg.Sources, config.Source{Name: "webex", URL: "https://example.test/webex.ics",
				Users: []string{"bob@contoso.com"}, PollInterval: time.Minute})
			return cfg
		},
		want: []string{"1h4m0s clear alice@contoso.com", "1h4m0s set bob@contoso.com InAConferenceCall 28m0s"},
	}, {
		name: "unreadable", restartAt: 64 * time.Minute,
		edit: func(c *memFeedCache) {
			for name, f := range c.feeds {
				f.Expansion.Occurrences = f.Expansion.Occurrences[:len(f.Expansion.Occurrences)-1]
				c.feeds[name] = f
			}
		},
		want: []string{"1h4m0s clear alice@contoso.com", "1h4m0s set bob@contoso.com InAConferenceCall 28m0s"},
		logs: "stored occurrences unreadable; parsing the copy instead",
	}, {
		// Half a horizon (18 h) after they were made: they may no
		// longer cover what is due. (Alice's lease ran out long ago.)
		name: "too old", restartAt: 61*time.Minute + 18*time.Hour + time.Minute,
	}} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var cfg *config.Config
				if tt.cfg != nil {
					cfg = tt.cfg()
				}
				h, reads := restartHarness(t, tt.restartAt, cfg, tt.edit)
				h.until(tt.restartAt + 5*time.Minute)
				h.stop()
				got := h.graph.Got()[1:] // after alice's set before the stop
				slices.Sort(got)
				if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("Graph calls after the restart:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
				}
				if r := reads.read(); !slices.Contains(r, "zoom") || !slices.Contains(r, "webex") {
					t.Errorf("copies read at the restart: %v; want both parsed", r)
				}
				if !strings.Contains(h.logs.String(), tt.logs) {
					t.Errorf("logs lack %q", tt.logs)
				}
			})
		})
	}
}

// TestStoredOccurrencesEqualParsed: for generated feeds in every style,
// with attendees matched, the occurrences and matches a restart installs
// from the stored occurrences are those it installs by parsing the copies.
func TestStoredOccurrencesEqualParsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		cfg := testConfig()
		cfg.Sources = nil
		bodies := map[string]string{}
		for i, st := range []string{"zoom", "webex", "outlook", "google", "mixed"} {
			g := &feedgen.Generator{Seed: uint64(i + 1), Meetings: 100, History: 30, Base: now.Truncate(24 * time.Hour), Style: st}
			for j := range 4 {
				name := fmt.Sprintf("%s-%d", st, j)
				bodies[name] = string(g.Feed(nil, j))
				src := config.Source{Name: name, URL: "https://example.test/" + name, PollInterval: time.Minute, Match: "attendees", Domains: []string{"contoso.com", "example.com", "fabrikam.com"}}
				if j%2 == 1 {
					src = config.Source{Name: name, URL: "https://example.test/" + name, PollInterval: time.Minute, Users: []string{alice}, Include: config.Filter{Description: "zoom|webex|teams"}}
				}
				cfg.Sources = append(cfg.Sources, src)
			}
		}
		log := slog.New(slog.DiscardHandler)
		newSet := func(cache FeedCache, fetcher Fetcher) *feedSet {
			m, err := plan.NewMatcher(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return newFeedSet(cfg, cache, fetcher, m, log, NewMetrics(nil))
		}
		cache := &memFeedCache{feeds: map[string]state.Feed{}}
		first := newSet(cache, &fakeFeeds{bodies: bodies, errs: map[string]error{}})
		if err := errors.Join(first.pollAll(t.Context(), nil, false, nil)...); err != nil {
			t.Fatal(err)
		}
		fromExpansions := newSet(cache, &fakeFeeds{hang: true})
		fromExpansions.loadCache(t.Context(), nil)
		plain := &memFeedCache{feeds: map[string]state.Feed{}}
		for name, f := range cache.feeds {
			plain.feeds[name] = f
		}
		plain.dropExpansions()
		parsed := newSet(plain, &fakeFeeds{hang: true})
		parsed.loadCache(t.Context(), nil)
		occs, matches := 0, 0
		for _, name := range first.names() {
			want, a, b := first.get(name), fromExpansions.get(name), parsed.get(name)
			if !a.loaded || !b.loaded || a.expandedAt != want.expandedAt {
				t.Fatalf("%s: loaded from the occurrences %v (expanded at %v), parsed %v; want both, at %v", name, a.loaded, a.expandedAt, b.loaded, want.expandedAt)
			}
			if a.occs != b.occs || a.digest != b.digest {
				t.Errorf("%s: %d occurrences from the stored ones (digest %x); parsed %d (%x)", name, a.occs, a.digest, b.occs, b.digest)
			}
			if diff := cmp.Diff(b.matches, a.matches); diff != "" {
				t.Errorf("%s: matches (-parsed +stored):\n%s", name, diff)
			}
			occs += a.occs
			matches += len(a.matches)
		}
		if occs < 100 || matches < 100 {
			t.Fatalf("compared %d occurrences and %d matches; want 100 of each at least", occs, matches)
		}
	})
}

// A feed whose bytes changed only outside the window (a meeting of last
// week edited) costs its parse and nothing more: no Graph call, the
// snapshot the spans are built from unchanged, the new copy stored.
func TestChangeOutsideTheWindowRebuildsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		before := ics(begin, "past", -7*24*time.Hour, time.Hour, "m", 10*time.Minute, 30*time.Minute)
		h := feedHarness(t, testConfig(), before)
		h.until(11 * time.Minute)
		_, _, gen := h.eng.feeds.snapshotGen()
		calls := len(h.graph.Got())
		after := strings.Replace(before, "SUMMARY:past", "SUMMARY:past (minutes attached)", 1)
		if after == before {
			t.Fatal("the edit changed nothing")
		}
		h.feeds.set("zoom", after)
		h.until(13 * time.Minute) // two polls
		_, _, genAfter := h.eng.feeds.snapshotGen()
		stored, _, _ := h.cache.Feed(t.Context(), "zoom")
		h.until(15 * time.Minute)
		h.stop()
		if genAfter != gen {
			t.Errorf("snapshot generation %d after an edit outside the window; want %d (no span rebuild)", genAfter, gen)
		}
		if got := len(h.graph.Got()); got != calls {
			t.Errorf("Graph calls after the edit: %v; want none after the first %d", h.graph.Got(), calls)
		}
		if string(stored.Body) != after {
			t.Error("the edited copy was not stored")
		}
		h.want("10m0s set alice@contoso.com InAConferenceCall 30m0s")
	})
}

// TestTakeOverWithoutResolvedAddresses: a worker starts with alice's
// session recorded mid-meeting but without her resolved addresses (its
// predecessor stopped before storing them) and cannot resolve her yet. It
// must not clear her: while her feed hangs with no stored copy, any source
// could be hers; once the feed is read, its meeting may be hers while its
// address awaits the lookup. Once Graph answers, her meeting goes on, with
// the lease set at its start.
func TestTakeOverWithoutResolvedAddresses(t *testing.T) {
	for _, hang := range []bool{true, false} {
		t.Run(fmt.Sprintf("feed hangs %v", hang), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := startHarness(t, testConfig(), ics(time.Now(), "m", 10*minute, time.Hour), nil, nil)
				h.until(20 * minute)
				h.stop()
				ids, err := h.store.Identities(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				for a := range ids {
					if err := h.store.DeleteIdentity(t.Context(), a); err != nil {
						t.Fatal(err)
					}
				}
				var mu sync.Mutex
				graphDown := true
				h.graph.ResolveErr = func(string) error {
					mu.Lock()
					defer mu.Unlock()
					if graphDown {
						return errors.New("Graph unreachable")
					}
					return nil
				}
				h.feeds.mu.Lock()
				h.feeds.hang = hang
				h.feeds.mu.Unlock()
				h.until(25 * minute)
				h.start(testConfig())
				h.until(40 * minute)
				if st := h.eng.Status(t.Context(), time.Now()); len(st.Sources) != 1 || st.Sources[0].Loaded == hang {
					t.Errorf("Status().Sources = %+v; want the feed loaded %v", st.Sources, !hang)
				}
				if got := h.graph.Got(); len(got) != 1 {
					t.Errorf("Graph calls while alice's addresses are unknown:\n%s\nwant only the set at 10m", strings.Join(got, "\n"))
				}
				mu.Lock()
				graphDown = false
				mu.Unlock()
				h.until(2 * time.Hour)
				h.stop()
				// Her lease ends with the meeting: nothing to clear.
				h.want("10m0s set alice@contoso.com InAConferenceCall 1h0m0s")
			})
		})
	}
}
