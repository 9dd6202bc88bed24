package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	gosync "sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/state"
)

// Fetcher gets a feed. *sources.Fetcher implements it.
type Fetcher interface {
	Fetch(ctx context.Context, req sources.FetchRequest) (sources.FetchResult, error)
}

// FeedCache keeps the last good copy of each feed across restarts.
// *state.Store implements it.
type FeedCache interface {
	Feed(source string) (state.Feed, bool, error)
	PutFeed(f state.Feed) error
	// PutFeeds stores several copies in one durable transaction: a pass
	// over thousands of feeds cannot afford an fsync for each.
	PutFeeds(fs []state.Feed) error
}

// Options configure an Engine.
type Options struct {
	Config   *config.Config
	Presence Presence
	Store    Store
	// Feeds keeps the last good copy of each feed; nil keeps it in memory
	// only (dry run, tests).
	Feeds   FeedCache
	Fetcher Fetcher
	Logger  *slog.Logger
	Metrics *Metrics
}

// Engine is the worker: it polls the sources, keeps their occurrences,
// and reconciles presence at every span boundary.
type Engine struct {
	cfg      *config.Config
	log      *slog.Logger
	metrics  *Metrics
	store    Store
	cache    FeedCache
	fetcher  Fetcher
	matcher  *Matcher
	exec     *executor
	started  time.Time
	maxLease time.Duration

	mu        gosync.Mutex // guards feeds, ready, firstPass
	feeds     map[string]*feed
	ready     bool
	firstPass bool

	reconcileMu gosync.Mutex // one reconcile at a time
	kick        chan struct{}
	wakeMu      gosync.Mutex
	wakeAt      time.Time
	wakeJob     gocron.Job
	sched       gocron.Scheduler
}

// feed is what the engine knows of one source.
type feed struct {
	src        *config.Source
	zone       *time.Location
	loaded     bool // occurrences come from a good copy (network or cache)
	healthy    bool
	lastErr    string
	lastOK     time.Time
	validators state.Validators
	hash       [32]byte
	occs       []sources.Occurrence
	matches    []Match
	from, to   time.Time // window the occurrences were expanded for
	warnings   int
}

// SourceStatus is the health of one source, for /readyz and the CLI.
type SourceStatus struct {
	Name        string    `json:"name"`
	URL         string    `json:"url"` // redacted
	Loaded      bool      `json:"loaded"`
	Healthy     bool      `json:"healthy"`
	LastError   string    `json:"last_error,omitempty"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	Occurrences int       `json:"occurrences"`
}

// New builds an engine. The configuration must have passed Validate.
func New(o Options) (*Engine, error) {
	m, err := NewMatcher(o.Config)
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	g := o.Config.Graph
	e := &Engine{
		cfg:      o.Config,
		log:      o.Logger,
		metrics:  o.Metrics,
		store:    o.Store,
		cache:    o.Feeds,
		fetcher:  o.Fetcher,
		matcher:  m,
		exec:     newExecutor(o.Presence, o.Store, NewLimiter(g.RateLimit, g.RateWindow), g.MaxConcurrency, o.Logger, o.Metrics),
		maxLease: o.Config.Presence.MaxLease,
		feeds:    make(map[string]*feed, len(o.Config.Sources)),
		kick:     make(chan struct{}, 1),
	}
	for i := range o.Config.Sources {
		src := &o.Config.Sources[i]
		e.feeds[src.Name] = &feed{src: src, zone: o.Config.SourceLocation(i)}
	}
	return e, nil
}

// Run is the daemon: it loads the last good copies, reads every source,
// reconciles at once, then polls each source at its interval and
// reconciles at every boundary until ctx is done. Sessions are not cleared
// on the way out: they expire by themselves and a restart picks them up.
func (e *Engine) Run(ctx context.Context) error {
	// A failing source is logged and marked unhealthy by the pass itself;
	// the daemon carries on with the others and polls it again later.
	_ = e.FirstPass(ctx)

	s, err := gocron.NewScheduler(gocron.WithLogger(gocronLogger{e.log}))
	if err != nil {
		return fmt.Errorf("start scheduler: %w", err)
	}
	e.sched = s
	for i := range e.cfg.Sources {
		name, interval := e.cfg.Sources[i].Name, e.cfg.SourcePollInterval(i)
		_, err := s.NewJob(gocron.DurationJob(interval),
			gocron.NewTask(func() { e.pollOne(ctx, name) }),
			gocron.WithSingletonMode(gocron.LimitModeReschedule),
			gocron.WithName("poll "+name))
		if err != nil {
			return fmt.Errorf("schedule poll of %q: %w", name, err)
		}
	}
	s.Start()
	if in, err := e.input(time.Now()); err == nil {
		e.scheduleWake(e.nextWake(in))
	} else {
		e.log.Error("read sessions", "err", err)
		e.scheduleWake(time.Now().Add(time.Minute))
	}
	defer func() {
		// Finish in-flight calls; the state is written after each call.
		_ = s.Shutdown()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.kick:
			e.reconcile(ctx, nil)
		}
	}
}

// FirstPass is what Run does before it starts scheduling: it loads the
// last good copy of every source not yet read, reads every source (a
// conditional GET for those it holds a copy of), reconciles at once as after
// a restart, and marks the engine ready. It returns the sources that could
// not be read, joined; their last good copies stay in use.
//
// Run calls it once. Calling it again is a full steady-state pass (the
// load tool, cmd/calpresence-load, measures both).
func (e *Engine) FirstPass(ctx context.Context) error {
	if e.started.IsZero() {
		e.started = time.Now()
	}
	e.loadCache()
	errs := e.pollAll(ctx, nil, false)
	e.mu.Lock()
	e.firstPass = true
	e.mu.Unlock()
	e.reconcile(ctx, nil)
	e.mu.Lock()
	e.ready = true
	e.mu.Unlock()
	return errors.Join(errs...)
}

// ResyncRequest says what a resync covers.
type ResyncRequest struct {
	Sources []string // sources to read again (all when empty)
	Users   []string // users whose presence may change (all when empty)
	DryRun  bool     // plan the calls but send none
}

// Resync reads the requested sources now, ignoring cache validators, and
// reconciles the requested users at once.
func (e *Engine) Resync(ctx context.Context, req ResyncRequest) ([]Result, error) {
	for _, n := range req.Sources {
		if _, ok := e.feeds[n]; !ok {
			return nil, fmt.Errorf("unknown source %q", n)
		}
	}
	errs := e.pollAll(ctx, req.Sources, true)
	var results []Result
	if req.DryRun {
		actions := e.plan(req.Users)
		for _, a := range actions {
			results = append(results, Result{Action: a})
		}
	} else {
		results = e.reconcile(ctx, req.Users)
	}
	return results, errors.Join(errs...)
}

// Clear clears the presence of the given users (all users we hold a session
// for, with all) and holds them back until their current span is over, so
// the next boundary does not set it again.
func (e *Engine) Clear(ctx context.Context, users []string, all bool) ([]Result, error) {
	now := time.Now()
	in, err := e.input(now)
	if err != nil {
		return nil, err
	}
	if all {
		users = sortedKeys(in.Sessions)
	}
	actions := make([]Action, 0, len(users))
	for _, u := range users {
		a := Action{Op: OpClear, User: u, Reason: "operator"}
		a.Prev, a.HasPrev = in.Sessions[u]
		actions = append(actions, a)
		if s, ok := SpanAt(in.Spans[u], now); ok {
			e.exec.holdUntil(u, s.End, "cleared by operator")
		}
	}
	e.reconcileMu.Lock()
	defer e.reconcileMu.Unlock()
	results := e.exec.run(ctx, actions)
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("clear %s: %w", r.Action.User, r.Err))
		}
	}
	return results, errors.Join(errs...)
}

// Ready reports whether the first pass is done, with each source's status.
func (e *Engine) Ready() (bool, []SourceStatus) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var st []SourceStatus
	for _, name := range sortedKeys(e.feeds) {
		f := e.feeds[name]
		st = append(st, SourceStatus{Name: name, URL: sources.RedactURL(f.src.URL), Loaded: f.loaded, Healthy: f.healthy,
			LastError: f.lastErr, LastSuccess: f.lastOK, Occurrences: len(f.occs)})
	}
	return e.ready, st
}

// kickReconcile asks Run's loop for a reconcile soon.
func (e *Engine) kickReconcile() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// loadCache reads the last good copy of every source from the feed cache,
// so that a restart knows the meetings before the network answers.
func (e *Engine) loadCache() {
	if e.cache == nil {
		return
	}
	now := time.Now()
	for name, f := range e.feeds {
		e.mu.Lock()
		loaded := f.loaded
		e.mu.Unlock()
		if loaded {
			continue // already read; the copy we hold is at least as new
		}
		c, ok, err := e.cache.Feed(name)
		if err != nil {
			e.log.Warn("read cached feed", "source", name, "err", err)
			continue
		}
		if !ok || c.URLHash != state.URLHash(f.src.URL) {
			continue
		}
		res, err := e.expand(f, c.Body, now)
		if err != nil {
			e.log.Warn("cached feed does not parse; ignored", "source", name, "err", err)
			continue
		}
		e.mu.Lock()
		e.install(f, res, now)
		f.validators, f.hash, f.lastOK = c.Validators, c.Hash, c.FetchedAt
		e.mu.Unlock()
		e.log.Info("last good copy loaded", "source", name, "fetched_at", c.FetchedAt, "occurrences", len(res.Occurrences))
	}
}

// pollAll reads the named sources (all when none) with bounded parallelism.
// The new copies go to the feed cache in batches, all written by the time
// it returns.
func (e *Engine) pollAll(ctx context.Context, names []string, force bool) []error {
	if len(names) == 0 {
		names = sortedKeys(e.feeds)
	}
	keep, flush := e.keepBatched()
	defer flush()
	errs := make([]error, len(names))
	parallel(len(names), fetchParallelism, func(i int) {
		_, errs[i] = e.poll(ctx, names[i], force, keep)
	})
	return errs
}

// feedBatch is the most copies written in one transaction: enough to share
// an fsync among many feeds, few enough to keep the bodies waiting for it
// to a few megabytes.
const feedBatch = 64

// keepBatched returns a keep function for poll that hands each new copy to
// a writer goroutine storing them with PutFeeds, and flush, which waits
// until everything handed over is written. A poller then waits for an fsync
// only when the writer falls behind, not for every feed (with one fsync per
// feed, a first pass over 10,000 feeds spent minutes in them).
func (e *Engine) keepBatched() (keep func(state.Feed), flush func()) {
	if e.cache == nil {
		return nil, func() {}
	}
	ch := make(chan state.Feed, feedBatch)
	done := make(chan struct{})
	go func() {
		defer close(done)
		batch := make([]state.Feed, 0, feedBatch)
		for f := range ch {
			batch = append(batch[:0], f)
		more:
			for len(batch) < feedBatch {
				select {
				case f, ok := <-ch:
					if !ok {
						break more
					}
					batch = append(batch, f)
				default:
					break more
				}
			}
			e.storeFeeds(batch)
			clear(batch) // let the bodies go
		}
	}()
	return func(f state.Feed) { ch <- f }, func() { close(ch); <-done }
}

// storeFeeds writes a batch of last good copies; on failure it tries them
// one by one, so one bad record does not cost the others theirs.
func (e *Engine) storeFeeds(batch []state.Feed) {
	if len(batch) == 0 {
		return
	}
	if err := e.cache.PutFeeds(batch); err == nil {
		return
	}
	for _, f := range batch {
		if err := e.cache.PutFeed(f); err != nil {
			e.log.Warn("keep last good copy", "source", f.Source, "err", err)
		}
	}
}

// pollOne is the scheduled poll of one source: it reconciles when the
// occurrences changed.
func (e *Engine) pollOne(ctx context.Context, name string) {
	changed, _ := e.poll(ctx, name, false, nil)
	if changed {
		e.kickReconcile()
	}
}

// poll fetches one source and, when it changed, parses and expands it. A
// failure keeps the last good copy: only a successfully parsed feed can
// remove events. It reports whether the occurrences changed. A new copy
// goes to the feed cache through keep, or at once when keep is nil.
func (e *Engine) poll(ctx context.Context, name string, force bool, keep func(state.Feed)) (bool, error) {
	f := e.feeds[name]
	log := e.log.With("source", name)
	now := time.Now()
	e.mu.Lock()
	req := sources.FetchRequest{Name: name, URL: f.src.URL, Headers: f.src.Headers}
	stale := f.loaded && now.Sub(f.from) > e.cfg.Schedule.Horizon/2
	// Without a feed cache (dry run) no body is kept to expand again when
	// the window has slid: a stale feed is fetched in full instead. (Kept
	// in memory, 10,000 feeds' bodies would take 900 MB.)
	if f.loaded && !force && !(stale && e.cache == nil) {
		req.Prev = sources.Validators{ETag: f.validators.ETag, LastModified: f.validators.LastModified}
		req.PrevHash = f.hash
	}
	e.mu.Unlock()

	res, err := e.fetcher.Fetch(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		e.unhealthy(f, "error", err, log)
		return false, &SourceError{name, err}
	}
	body := res.Body
	if res.NotModified {
		e.metrics.FeedFetches.WithLabelValues(name, "not_modified").Inc()
		e.healthy(f, now)
		if !stale {
			return false, nil
		}
		// The window has slid: expand the unchanged copy again.
		if body, err = e.lastBody(f); err != nil {
			log.Warn("cannot re-expand unchanged feed", "err", err)
			return false, nil
		}
	}
	out, err := e.expand(f, body, now)
	if err != nil {
		e.unhealthy(f, "parse_error", err, log)
		return false, &SourceError{name, err}
	}
	if !res.NotModified {
		// One result per fetch: "ok" only for a body that parsed.
		e.metrics.FeedFetches.WithLabelValues(name, "ok").Inc()
	}
	for _, w := range out.Warnings {
		log.Debug("feed warning", "warning", w)
	}
	e.mu.Lock()
	changed := !slices.EqualFunc(f.occs, out.Occurrences, sameOccurrence) || !f.loaded
	e.install(f, out, now)
	if !res.NotModified {
		f.validators = state.Validators{ETag: res.Validators.ETag, LastModified: res.Validators.LastModified}
		f.hash = res.Hash
	}
	f.healthy, f.lastErr, f.lastOK = true, "", now
	e.mu.Unlock()
	e.metrics.FeedHealthy.WithLabelValues(name).Set(1)
	e.metrics.FeedLastSuccess.WithLabelValues(name).Set(float64(now.Unix()))
	if !res.NotModified && e.cache != nil {
		c := state.Feed{Source: name, URLHash: state.URLHash(f.src.URL), Validators: state.Validators{ETag: res.Validators.ETag, LastModified: res.Validators.LastModified},
			Hash: res.Hash, Body: body, FetchedAt: now}
		if keep != nil {
			keep(c)
		} else if err := e.cache.PutFeed(c); err != nil {
			log.Warn("keep last good copy", "err", err)
		}
	}
	if changed {
		log.Info("feed read", "events", out.Events, "occurrences", len(out.Occurrences), "warnings", len(out.Warnings))
	}
	return changed, nil
}

// lastBody reads the last good copy of f from the feed cache.
func (e *Engine) lastBody(f *feed) ([]byte, error) {
	if e.cache == nil {
		return nil, errors.New("no feed cache")
	}
	c, ok, err := e.cache.Feed(f.src.Name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("no stored copy")
	}
	return c.Body, nil
}

// expand parses body and expands it over [now-1h, now+horizon].
func (e *Engine) expand(f *feed, body []byte, now time.Time) (*sources.Result, error) {
	res, err := sources.ParseExpand(body, sources.ExpandOptions{
		From: now.Add(-time.Hour), To: now.Add(e.cfg.Schedule.Horizon),
		Zone: f.zone, MaxPerEvent: e.cfg.Schedule.MaxOccurrences,
	})
	if err != nil {
		return nil, err
	}
	// Descriptions (Zoom's and Webex's dial-in text, a kilobyte an event)
	// would be the bulk of what 10,000 feeds' occurrences hold, and only a
	// description filter reads them; without one, a changed description
	// changes nobody's presence either.
	res.Occurrences = compact(res.Occurrences, e.matcher.usesDescription(f.src.Name))
	return res, nil
}

// install replaces the occurrences of f. e.mu must be held.
func (e *Engine) install(f *feed, res *sources.Result, now time.Time) {
	f.occs = res.Occurrences
	f.matches = e.matcher.Match(f.src.Name, f.occs)
	f.from, f.to = now.Add(-time.Hour), now.Add(e.cfg.Schedule.Horizon)
	f.loaded = true
	f.warnings = len(res.Warnings)
	e.metrics.FeedEvents.WithLabelValues(f.src.Name).Set(float64(len(f.occs)))
}

func (e *Engine) unhealthy(f *feed, result string, err error, log *slog.Logger) {
	e.metrics.FeedFetches.WithLabelValues(f.src.Name, result).Inc()
	e.metrics.FeedHealthy.WithLabelValues(f.src.Name).Set(0)
	e.mu.Lock()
	was := f.healthy || f.lastErr == ""
	f.healthy, f.lastErr = false, err.Error()
	e.mu.Unlock()
	if was {
		log.Warn("feed unreadable; keeping the last good copy", "err", err)
	} else {
		log.Debug("feed still unreadable", "err", err)
	}
}

func (e *Engine) healthy(f *feed, now time.Time) {
	e.mu.Lock()
	was := f.healthy
	f.healthy, f.lastErr, f.lastOK = true, "", now
	e.mu.Unlock()
	if !was {
		e.log.Info("feed readable again", "source", f.src.Name)
	}
	e.metrics.FeedHealthy.WithLabelValues(f.src.Name).Set(1)
	e.metrics.FeedLastSuccess.WithLabelValues(f.src.Name).Set(float64(now.Unix()))
}

// reconcile brings Graph in line with the spans at this moment and
// schedules the next boundary. users restricts the calls (nil: all).
func (e *Engine) reconcile(ctx context.Context, users []string) []Result {
	e.reconcileMu.Lock()
	defer e.reconcileMu.Unlock()
	e.metrics.Reconciles.Inc()

	now := time.Now()
	in, err := e.input(now)
	if err != nil {
		e.log.Error("read sessions", "err", err)
		e.scheduleWake(now.Add(time.Minute))
		return nil
	}
	e.mu.Lock()
	in.FirstPass, e.firstPass = e.firstPass, false
	e.mu.Unlock()
	in.Started = e.started
	actions, _ := Reconcile(in)
	results := e.exec.run(ctx, onlyUsers(actions, users))
	e.scheduleWake(e.nextWake(in))
	return results
}

// input gathers what Reconcile looks at, at now.
func (e *Engine) input(now time.Time) (ReconcileInput, error) {
	e.mu.Lock()
	matches := e.allMatches()
	known := e.knownFunc()
	e.mu.Unlock()
	sessions, err := e.store.Sessions()
	if err != nil {
		return ReconcileInput{}, err
	}
	return ReconcileInput{
		Now: now, Spans: Spans(matches, e.cfg.Presence.MergeGap), Sessions: sessions, Matches: matches,
		Known: known, Hold: e.exec.held, MaxLease: e.maxLease,
	}, nil
}

// onlyUsers keeps the actions for users (all when users is empty).
func onlyUsers(actions []Action, users []string) []Action {
	if len(users) == 0 {
		return actions
	}
	return slices.DeleteFunc(actions, func(a Action) bool { return !slices.Contains(users, a.User) })
}

// nextWake is the next time a reconcile is due: now, when a boundary fell
// due while the last pass was still sending its calls; else the next
// boundary of any span or session, or the end of a retry hold. It also
// refreshes the session and busy-user gauges.
//
// in is the input of the pass that just ran: its spans still hold (a poll
// that changes them kicks a new pass), only the time and the sessions
// have moved on.
func (e *Engine) nextWake(in ReconcileInput) time.Time {
	now := time.Now()
	sessions, err := e.store.Sessions()
	if err != nil {
		return now.Add(time.Minute)
	}
	in.Now, in.Sessions, in.FirstPass = now, sessions, false
	busy := 0
	for _, ss := range in.Spans {
		if _, ok := SpanAt(ss, now); ok {
			busy++
		}
	}
	e.metrics.UsersBusy.Set(float64(busy))
	e.metrics.Sessions.Set(float64(len(in.Sessions)))
	due, next := Reconcile(in)
	if len(due) > 0 {
		return now
	}
	if r := e.exec.nextRelease(now); !r.IsZero() && (next.IsZero() || r.Before(next)) {
		next = r
	}
	return next
}

// scheduleWake (re)schedules the one-time boundary job at t.
func (e *Engine) scheduleWake(t time.Time) {
	if e.sched == nil {
		return
	}
	e.wakeMu.Lock()
	defer e.wakeMu.Unlock()
	if t.IsZero() || (!e.wakeAt.IsZero() && e.wakeAt.Equal(t)) {
		return
	}
	if e.wakeJob != nil {
		_ = e.sched.RemoveJob(e.wakeJob.ID())
		e.wakeJob = nil
	}
	if min := time.Now().Add(time.Millisecond); t.Before(min) {
		t = min
	}
	j, err := e.sched.NewJob(gocron.OneTimeJob(gocron.OneTimeJobStartDateTime(t)),
		gocron.NewTask(e.kickReconcile), gocron.WithName("boundary"))
	if err != nil {
		e.log.Error("schedule boundary", "at", t, "err", err)
		return
	}
	e.wakeJob, e.wakeAt = j, t
}

// allMatches gathers the matches of every source. e.mu must be held.
func (e *Engine) allMatches() []Match {
	var matches []Match
	for _, name := range sortedKeys(e.feeds) {
		matches = append(matches, e.feeds[name].matches...)
	}
	return matches
}

// plan returns the actions a reconcile would take now, without taking them.
func (e *Engine) plan(users []string) []Action {
	in, err := e.input(time.Now())
	if err != nil {
		return nil
	}
	actions, _ := Reconcile(in)
	return onlyUsers(actions, users)
}

// knownFunc reports, per user, whether every source that could concern
// them has been read. e.mu must be held.
func (e *Engine) knownFunc() func(string) bool {
	matchUnloaded := false
	unknownFixed := make(map[string]bool)
	for _, f := range e.feeds {
		if f.loaded {
			continue
		}
		if f.src.Match != "" {
			matchUnloaded = true
		}
		for _, u := range f.src.Users {
			unknownFixed[u] = true
		}
	}
	return func(user string) bool { return !matchUnloaded && !unknownFixed[user] }
}

func sameOccurrence(a, b sources.Occurrence) bool {
	return a.UID == b.UID && a.RecurrenceID.Equal(b.RecurrenceID) && a.Start.Equal(b.Start) && a.End.Equal(b.End) &&
		a.Status == b.Status && a.Transparent == b.Transparent && a.AllDay == b.AllDay &&
		a.Summary == b.Summary && a.Location == b.Location && a.Description == b.Description &&
		a.Organizer == b.Organizer && slices.Equal(a.Attendees, b.Attendees)
}

// gocronLogger adapts slog to gocron's logger.
type gocronLogger struct{ l *slog.Logger }

func (g gocronLogger) Debug(msg string, args ...any) { g.l.Debug("gocron: "+msg, args...) }
func (g gocronLogger) Info(msg string, args ...any)  { g.l.Debug("gocron: "+msg, args...) }
func (g gocronLogger) Warn(msg string, args ...any)  { g.l.Warn("gocron: "+msg, args...) }
func (g gocronLogger) Error(msg string, args ...any) { g.l.Error("gocron: "+msg, args...) }
