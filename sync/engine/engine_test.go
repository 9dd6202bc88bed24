package engine

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/mem"
)

// fakeFeeds serves feed bodies from memory, answering "not modified" when
// the content is unchanged, or an error when told to.
type fakeFeeds struct {
	mu     sync.Mutex
	bodies map[string]string
	errs   map[string]error
	reads  int
	hang   bool // every fetch waits until its context is done
}

func (f *fakeFeeds) set(name, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies[name] = body
}

func (f *fakeFeeds) fail(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[name] = err
}

func (f *fakeFeeds) Fetch(ctx context.Context, req sources.FetchRequest) (sources.FetchResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.hang {
		f.mu.Unlock()
		<-ctx.Done()
		f.mu.Lock()
		return sources.FetchResult{}, ctx.Err()
	}
	if err := f.errs[req.Name]; err != nil {
		return sources.FetchResult{}, err
	}
	b, ok := f.bodies[req.URL] // a body served at its URL wins
	if !ok {
		b = f.bodies[req.Name]
	}
	body := []byte(b)
	h := sha256.Sum256(body)
	if h == req.PrevHash {
		return sources.FetchResult{NotModified: true, Hash: h}, nil
	}
	return sources.FetchResult{Body: body, Hash: h, Status: 200}, nil
}

// ics builds a feed of events given as (uid, start, duration) relative to base.
func ics(base time.Time, events ...any) string {
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n")
	for i := 0; i+2 < len(events); i += 3 {
		uid, start, dur := events[i].(string), events[i+1].(time.Duration), events[i+2].(time.Duration)
		s := base.Add(start).UTC()
		fmt.Fprintf(&b, "BEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20000101T000000Z\r\nDTSTART:%s\r\nDTEND:%s\r\nSUMMARY:%s\r\nEND:VEVENT\r\n",
			uid, s.Format("20060102T150405Z"), s.Add(dur).Format("20060102T150405Z"), uid)
	}
	b.WriteString("END:VCALENDAR\r\n")
	return b.String()
}

func testConfig() *config.Config {
	cfg := &config.Config{
		Graph:    config.Graph{ClientID: "app", MaxConcurrency: 4, RateLimit: 10000, RateWindow: 30 * time.Second},
		Presence: config.Presence{Availability: presence.Busy, Activity: presence.ActivityInAConferenceCall, MergeGap: 2 * time.Minute, MaxLease: 4 * time.Hour},
		Schedule: config.Schedule{PollInterval: time.Minute, Horizon: 36 * time.Hour, Timezone: "UTC", MaxOccurrences: 1000},
		Sources:  []config.Source{{Name: "zoom", URL: "https://example.test/feed.ics", Users: []string{alice}, PollInterval: time.Minute}},
	}
	return cfg
}

// harness runs an engine in a synctest bubble.
type harness struct {
	t       *testing.T
	feeds   *fakeFeeds
	graph   *testutil.Presence
	store   *mem.Store
	begin   time.Time
	cancel  context.CancelFunc
	done    chan error
	metrics *Metrics
	eng     *Engine
	logs    testutil.LogBuffer
	cache   FeedCache // nil: none, as in a dry run
}

// reasons returns "op reason" of every presence change logged.
func (h *harness) reasons() []string {
	var out []string
	for _, line := range strings.Split(h.logs.String(), "\n") {
		var rec struct{ Msg, Op, Reason, User string }
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec.Msg, "presence ") {
			out = append(out, rec.Op+" "+rec.Reason)
		}
	}
	return out
}

func startHarness(t *testing.T, cfg *config.Config, body string, store *mem.Store, graph *testutil.Presence) *harness {
	h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{"zoom": body}, errs: map[string]error{}},
		graph: graph, store: store, begin: time.Now(), metrics: NewMetrics(nil)}
	if h.graph == nil {
		h.graph = &testutil.Presence{Begin: h.begin}
	}
	if h.store == nil {
		h.store = mem.New()
	}
	h.start(cfg)
	return h
}

func (h *harness) start(cfg *config.Config) { h.startWith(cfg, nil, nil) }

// startWith is start with edit changing the engine's options (another
// store, a readiness check) and prepare the engine before it runs (its
// scheduler); either may be nil.
func (h *harness) startWith(cfg *config.Config, edit func(*Options), prepare func(*Engine)) {
	o := Options{Config: cfg, Presence: h.graph, Store: h.store, Fetcher: h.feeds, Feeds: h.cache,
		Logger: slog.New(slog.NewJSONHandler(&h.logs, nil)), Metrics: h.metrics}
	if edit != nil {
		edit(&o)
	}
	eng, err := New(h.t.Context(), o)
	if err != nil {
		h.t.Fatal(err)
	}
	if prepare != nil {
		prepare(eng)
	}
	h.eng = eng
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- eng.Run(ctx) }()
}

func (h *harness) stop() {
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run = %v", err)
	}
}

// until advances virtual time to d after the test began.
func (h *harness) until(d time.Duration) {
	time.Sleep(time.Until(h.begin.Add(d)))
	synctest.Wait()
}

func (h *harness) want(want ...string) {
	h.t.Helper()
	got := h.graph.Got()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		h.t.Errorf("Graph calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEngineLifecycle(t *testing.T) {
	tests := []struct {
		name   string
		events []any
		until  time.Duration
		want   []string
	}{
		{"meeting sets at its start, lease ends with it",
			[]any{"m", 10 * time.Minute, 30 * time.Minute}, time.Hour,
			[]string{"10m0s set alice@contoso.com InAConferenceCall 30m0s"}},
		{"short meeting is cleared at its end",
			[]any{"m", 10 * time.Minute, 3 * time.Minute}, time.Hour,
			[]string{"10m0s set alice@contoso.com InAConferenceCall 5m0s", "13m0s clear alice@contoso.com"}},
		{"six hour workshop gets a keep-alive",
			[]any{"w", 10 * time.Minute, 6 * time.Hour}, 7 * time.Hour,
			[]string{"10m0s set alice@contoso.com InAConferenceCall 4h0m0s", "4h8m0s set alice@contoso.com InAConferenceCall 2h2m0s"}},
		{"back-to-back meetings within merge_gap are one span",
			[]any{"a", 10 * time.Minute, 30 * time.Minute, "b", 41 * time.Minute, 30 * time.Minute}, 2 * time.Hour,
			[]string{"10m0s set alice@contoso.com InAConferenceCall 1h1m0s"}},
		{"meetings further apart get their own spans",
			[]any{"a", 10 * time.Minute, 3 * time.Minute, "b", 30 * time.Minute, 3 * time.Minute}, time.Hour,
			[]string{
				"10m0s set alice@contoso.com InAConferenceCall 5m0s", "13m0s clear alice@contoso.com",
				"30m0s set alice@contoso.com InAConferenceCall 5m0s", "33m0s clear alice@contoso.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := startHarness(t, testConfig(), ics(time.Now(), tt.events...), nil, nil)
				h.until(tt.until)
				h.stop()
				h.want(tt.want...)
			})
		})
	}
}

func TestEngineChanges(t *testing.T) {
	const user = "alice@contoso.com"
	tests := []struct {
		name    string
		change  string // the feed after 20 minutes
		want    []string
		reasons []string
	}{
		{"removed", "", []string{"10m0s set " + user + " InAConferenceCall 30m0s", "21m0s clear " + user},
			[]string{"set start", "clear early-end:removed"}},
		{"shortened to before now", "m|10|5", []string{"10m0s set " + user + " InAConferenceCall 30m0s", "21m0s clear " + user},
			[]string{"set start", "clear early-end:shortened"}},
		{"moved later", "m|60|30", []string{
			"10m0s set " + user + " InAConferenceCall 30m0s", "21m0s clear " + user,
			"1h0m0s set " + user + " InAConferenceCall 30m0s"},
			[]string{"set start", "clear early-end:moved", "set start"}},
		{"extended", "m|10|60", []string{
			"10m0s set " + user + " InAConferenceCall 30m0s", "21m0s set " + user + " InAConferenceCall 49m0s"},
			[]string{"set start", "set extended"}},
		{"shortened but running", "m|10|15", []string{
			"10m0s set " + user + " InAConferenceCall 30m0s", "25m0s clear " + user},
			[]string{"set start", "clear end"}},
		{"cancelled", "cancel", []string{"10m0s set " + user + " InAConferenceCall 30m0s", "21m0s clear " + user},
			[]string{"set start", "clear early-end:cancelled"}},
		{"declined", "decline", []string{"10m0s set " + user + " InAConferenceCall 30m0s", "21m0s clear " + user},
			[]string{"set start", "clear early-end:declined"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				begin := time.Now()
				h := startHarness(t, testConfig(), ics(begin, "m", 10*time.Minute, 30*time.Minute), nil, nil)
				h.until(20*time.Minute + 30*time.Second)
				switch {
				case tt.change == "":
					h.feeds.set("zoom", ics(begin))
				case tt.change == "cancel":
					h.feeds.set("zoom", strings.Replace(ics(begin, "m", 10*time.Minute, 30*time.Minute), "SUMMARY:m", "SUMMARY:m\r\nSTATUS:CANCELLED", 1))
				case tt.change == "decline":
					h.feeds.set("zoom", strings.Replace(ics(begin, "m", 10*time.Minute, 30*time.Minute), "SUMMARY:m",
						"SUMMARY:m\r\nATTENDEE;PARTSTAT=DECLINED:mailto:Alice@Contoso.com", 1))
				default:
					var start, dur int
					fmt.Sscanf(tt.change, "m|%d|%d", &start, &dur)
					h.feeds.set("zoom", ics(begin, "m", time.Duration(start)*time.Minute, time.Duration(dur)*time.Minute))
				}
				h.until(2 * time.Hour)
				h.stop()
				h.want(tt.want...)
				if got := h.reasons(); strings.Join(got, ",") != strings.Join(tt.reasons, ",") {
					t.Errorf("logged reasons = %q; want %q", got, tt.reasons)
				}
			})
		})
	}
}

func TestEngineFutureChangeWaitsForStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		h := startHarness(t, testConfig(), ics(begin, "m", 30*time.Minute, 30*time.Minute), nil, nil)
		h.until(5 * time.Minute)
		h.feeds.set("zoom", ics(begin, "m", 40*time.Minute, 30*time.Minute))
		h.until(35 * time.Minute)
		h.want() // nothing before the new start
		h.until(2 * time.Hour)
		h.stop()
		h.want("40m0s set alice@contoso.com InAConferenceCall 30m0s")
	})
}

func TestEngineFeedFailureNeverClears(t *testing.T) {
	good := func(begin time.Time) string {
		return ics(begin, "m", 10*time.Minute, 3*time.Minute, "n", 30*time.Minute, 3*time.Minute)
	}
	tests := []struct {
		name  string
		spoil func(h *harness, begin time.Time)
		mend  func(h *harness, begin time.Time)
	}{
		{"fetch error",
			func(h *harness, _ time.Time) { h.feeds.fail("zoom", errors.New("connection refused")) },
			func(h *harness, _ time.Time) { h.feeds.fail("zoom", nil) }},
		{"truncated file",
			func(h *harness, begin time.Time) { b := good(begin); h.feeds.set("zoom", b[:len(b)/2]) },
			func(h *harness, begin time.Time) { h.feeds.set("zoom", good(begin)) }},
		{"not iCalendar",
			func(h *harness, _ time.Time) { h.feeds.set("zoom", "<html><body>Sign in</body></html>") },
			func(h *harness, begin time.Time) { h.feeds.set("zoom", good(begin)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				begin := time.Now()
				h := startHarness(t, testConfig(), good(begin), nil, nil)
				h.until(11 * time.Minute)
				tt.spoil(h, begin)
				h.until(20 * time.Minute)
				if ready, st := h.eng.Ready(); !ready || st[0].Healthy || st[0].LastError == "" {
					t.Errorf("Ready() = %v, %+v; want ready with zoom unhealthy", ready, st)
				}
				// The last good copy still drives the boundaries.
				h.until(40 * time.Minute)
				tt.mend(h, begin)
				h.until(45 * time.Minute)
				if _, st := h.eng.Ready(); !st[0].Healthy {
					t.Errorf("source not healthy again after recovery: %+v", st[0])
				}
				h.stop()
				h.want(
					"10m0s set alice@contoso.com InAConferenceCall 5m0s", "13m0s clear alice@contoso.com",
					"30m0s set alice@contoso.com InAConferenceCall 5m0s", "33m0s clear alice@contoso.com")
			})
		})
	}
}

func TestEngineUnchangedPollsCostNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		h := startHarness(t, testConfig(), ics(begin, "m", 10*time.Minute, 5*time.Hour), nil, nil)
		h.until(11 * time.Minute)
		calls := len(h.graph.Got())
		h.until(111 * time.Minute) // 100 polls
		h.stop()
		if got := len(h.graph.Got()); got != calls {
			t.Errorf("Graph calls during 100 unchanged polls = %d; want 0", got-calls)
		}
		if got := feedValue(h.metrics, "calpresence_feed_fetches_total", "zoom", "ok"); got != 1 {
			t.Errorf("feeds parsed = %v; want 1 (the first read)", got)
		}
		if got := feedValue(h.metrics, "calpresence_feed_fetches_total", "zoom", "not_modified"); got < 100 {
			t.Errorf("unchanged polls = %v; want >= 100", got)
		}
	})
}

func TestEngineRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		store := mem.New()
		body := ics(begin, "m", 10*time.Minute, 30*time.Minute, "s", 60*time.Minute, 3*time.Minute, "l", 80*time.Minute, 30*time.Minute)
		graph := &testutil.Presence{Begin: begin}
		h := startHarness(t, testConfig(), body, store, graph)
		h.until(15 * time.Minute)
		h.stop() // killed mid-span
		h.until(16 * time.Minute)
		h.start(testConfig()) // session still valid: no duplicate set
		h.until(61 * time.Minute)
		h.stop() // down from 61m to 64m: the short span ends at 63m, its lease lives to 65m
		h.until(64 * time.Minute)
		h.start(testConfig())
		h.until(70 * time.Minute)
		h.stop() // down from 70m to 85m: the next span starts at 80m meanwhile
		h.until(85 * time.Minute)
		h.start(testConfig())
		h.until(2 * time.Hour)
		h.stop()
		h.want(
			"10m0s set alice@contoso.com InAConferenceCall 30m0s",
			"1h0m0s set alice@contoso.com InAConferenceCall 5m0s",
			"1h4m0s clear alice@contoso.com",
			"1h25m0s set alice@contoso.com InAConferenceCall 25m0s")
		if got, want := strings.Join(h.reasons(), ","), "set start,set start,clear restart,set restart"; got != want {
			t.Errorf("logged reasons = %q; want %q", got, want)
		}
	})
}

func TestEngineLeadGraceAndOverlappingSources(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		cfg := testConfig()
		lead, grace := 2*time.Minute, 3*time.Minute
		cfg.Sources[0].Lead, cfg.Sources[0].Grace = &lead, &grace
		cfg.Sources = append(cfg.Sources, config.Source{Name: "webex", URL: "https://example.test/webex.ics",
			Users: []string{alice}, PollInterval: time.Minute, Activity: presence.ActivityInACall})
		h := startHarness(t, cfg, ics(begin, "z", 30*time.Minute, 20*time.Minute), nil, nil)
		// A Webex call (InACall) from 20m to 40m overlaps the Zoom meeting
		// (28m to 53m with lead and grace): one span, showing the call
		// until the meeting (with its lead) begins, then the stronger
		// InAConferenceCall, set again on the same session; no clear in
		// between, and none at the end, where the lease ends.
		h.feeds.set("webex", ics(begin, "w", 20*time.Minute, 20*time.Minute))
		h.stop()
		h.start(cfg)
		h.until(2 * time.Hour)
		h.stop()
		h.want("20m0s set alice@contoso.com InACall 33m0s", "28m0s set alice@contoso.com InAConferenceCall 25m0s")
	})
}

// slowCache is a feed cache that takes a while to read one source's copy.
type slowCache struct {
	*memFeedCache
	slow  string
	delay time.Duration
}

func (c *slowCache) Feed(ctx context.Context, source string) (state.Feed, bool, error) {
	if source == c.slow {
		time.Sleep(c.delay)
	}
	return c.memFeedCache.Feed(ctx, source)
}

// On a restart the stored copies that must be parsed (stored without
// their occurrences, as by an earlier release) are reconciled as they
// load: the users of a copy that loads at once are not kept waiting for
// one that is slow.
func TestEngineRestartReconcilesAsCopiesLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		cfg := testConfig()
		cfg.Sources = append(cfg.Sources, config.Source{Name: "zz-webex", URL: "https://example.test/webex.ics",
			Users: []string{"bob@contoso.com"}, PollInterval: time.Minute})
		cache := &memFeedCache{feeds: map[string]state.Feed{}}
		h := &harness{t: t, begin: begin, metrics: NewMetrics(nil), store: mem.New(),
			graph: &testutil.Presence{Begin: begin}, cache: cache,
			feeds: &fakeFeeds{errs: map[string]error{}, bodies: map[string]string{
				"zoom":     ics(begin, "a", 60*time.Minute, 3*time.Minute),
				"zz-webex": ics(begin, "b", 62*time.Minute, 30*time.Minute),
			}}}
		h.start(cfg)
		h.until(61 * time.Minute)
		h.stop()
		h.feeds.mu.Lock()
		h.feeds.hang = true
		h.feeds.mu.Unlock()
		cache.dropExpansions()
		h.cache = &slowCache{memFeedCache: cache, slow: "zz-webex", delay: 10 * time.Second}
		h.until(64 * time.Minute)
		h.start(cfg)
		h.until(70 * time.Minute)
		h.stop()
		h.want(
			"1h0m0s set alice@contoso.com InAConferenceCall 5m0s",
			"1h4m0s clear alice@contoso.com",
			"1h4m10s set bob@contoso.com InAConferenceCall 27m50s")
	})
}

// TestEngineReadiness: not ready before a source has loaded or while
// Graph's authority has issued no token; ready otherwise, with what is
// degraded listed.
func TestEngineReadiness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		var authenticated atomic.Bool
		feeds := &fakeFeeds{bodies: map[string]string{"zoom": ics(begin, "m", 10*time.Minute, 30*time.Minute)}, errs: map[string]error{}}
		feeds.fail("zoom", errors.New("connection refused"))
		h := &harness{t: t, feeds: feeds, graph: &testutil.Presence{Begin: begin}, store: mem.New(), begin: begin, metrics: NewMetrics(nil)}
		h.startWith(testConfig(), func(o *Options) { o.Authenticated = authenticated.Load }, nil)
		eng := h.eng
		h.until(time.Minute)
		r := eng.Readiness(true)
		if r.Ready || !slices.Contains(r.Reasons, "no source has loaded yet (neither read nor a stored copy)") ||
			!slices.Contains(r.Reasons, "Graph's authority has issued no token since start (check the credentials)") {
			t.Errorf("Readiness with no source loaded and no token = %+v; want not ready, with both reasons", r)
		}
		authenticated.Store(true)
		feeds.fail("zoom", nil)
		h.until(3 * time.Minute)
		if r := eng.Readiness(true); !r.Ready || len(r.Reasons) != 0 {
			t.Errorf("Readiness once the feed loaded and a token came = %+v; want ready", r)
		}
		feeds.fail("zoom", errors.New("HTTP 503"))
		h.until(5 * time.Minute)
		if r := eng.Readiness(true); !r.Ready || len(r.Degraded) != 1 || !strings.Contains(r.Degraded[0], "source zoom is failing") {
			t.Errorf("Readiness with the feed failing after it loaded = %+v; want ready, degraded by the source", r)
		}
		h.stop()
	})
}

// The reconciles the first round asks for as feeds answer are a second
// apart at least, and four times what planning the last one took: at
// 100,000 people a reconcile a second took most of a core from parsing.
func TestKickSoonSpacesReconcilesByTheirCost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &Engine{kick: make(chan struct{}, 1)}
		kick := e.kickSoon()
		kicked := func() bool {
			kick()
			select {
			case <-e.kick:
				return true
			default:
				return false
			}
		}
		e.planCost.Store(int64(2 * time.Second)) // 8 s apart
		steps := []struct {
			after time.Duration
			want  bool
		}{
			{0, true},
			{5 * time.Second, false},
			{3 * time.Second, true},
			{7 * time.Second, false},
		}
		for i, s := range steps {
			time.Sleep(s.after)
			if got := kicked(); got != s.want {
				t.Fatalf("step %d (planning 2 s): kicked = %v; want %v", i, got, s.want)
			}
		}
		e.planCost.Store(int64(10 * time.Millisecond)) // cheap: a second apart
		time.Sleep(time.Second)
		if !kicked() {
			t.Fatal("8 s after the last, planning 10 ms: not kicked")
		}
		time.Sleep(500 * time.Millisecond)
		if kicked() {
			t.Fatal("0.5 s after the last: kicked; want at most one a second")
		}
		time.Sleep(500 * time.Millisecond)
		if !kicked() {
			t.Fatal("1 s after the last, planning 10 ms: not kicked")
		}
	})
}
