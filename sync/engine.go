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
	feeds    *feedSet
	exec     *executor
	started  time.Time
	maxLease time.Duration

	mu        gosync.Mutex // guards ready, firstPass, started
	ready     bool
	firstPass bool

	reconcileMu gosync.Mutex // one reconcile at a time
	kick        chan struct{}
	wakeMu      gosync.Mutex
	wakeAt      time.Time
	wakeJob     gocron.Job
	sched       gocron.Scheduler
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
	// Stale: the copy in force was last confirmed longer ago than
	// max_copy_age, and its events after that no longer count.
	Stale bool `json:"stale,omitempty"`
	// CopyAge is how long ago the copy in force was last confirmed, for
	// a source that is failing or stale (e.g. "26h4m10s").
	CopyAge string `json:"copy_age,omitempty"`
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
		feeds:    newFeedSet(o.Config, o.Feeds, o.Fetcher, m, o.Logger, o.Metrics),
		exec:     newExecutor(o.Presence, o.Store, NewLimiter(g.RateLimit, g.RateWindow), g.MaxConcurrency, o.Logger, o.Metrics),
		maxLease: o.Config.Presence.MaxLease,
		kick:     make(chan struct{}, 1),
	}
	return e, nil
}

// Run is the daemon: it loads the last good copies and reconciles from
// them and the stored sessions at once (the engine is then ready), reads
// every source, reconciling again as they answer, then polls each source at
// its interval and reconciles at every boundary until ctx is done. A feed
// that hangs delays nobody's change. Sessions are not cleared on the way
// out: they expire by themselves and a restart picks them up.
func (e *Engine) Run(ctx context.Context) error {
	s, err := gocron.NewScheduler(gocron.WithLogger(gocronLogger{e.log}))
	if err != nil {
		return fmt.Errorf("start scheduler: %w", err)
	}
	e.sched = s
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
	// The polls: one goroutine and a bounded pool of workers for all the
	// sources (sync/poller.go), stopped and waited for on the way out.
	pollCtx, stopPolls := context.WithCancel(ctx)
	var polls gosync.WaitGroup
	polls.Go(func() {
		// The stored copies, reconciled as they load (a reconcile a
		// second at most: each builds every user's spans).
		e.startFromStore(pollCtx, throttle(e.kickReconcile, time.Second))
		polls.Go(func() { e.feeds.runPolls(pollCtx, time.Now(), e.kickReconcile) })
		// The first round reads every source now. A failing source is
		// logged and marked unhealthy by the poll itself; its last good
		// copy stays in force and it is polled again at its interval.
		_ = e.feeds.pollAll(pollCtx, nil, false, e.kickReconcile)
		if pollCtx.Err() == nil {
			e.reconcile(pollCtx, nil)
			e.endFirstPass()
		}
	})
	defer polls.Wait()
	defer stopPolls()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.kick:
			e.reconcile(ctx, nil)
		}
	}
}

// FirstPass is Run's start without the scheduling: it loads the last good
// copy of every source, reconciles at once from them and the stored
// sessions (the engine is then ready), reads every source (a conditional
// GET for those it holds a copy of) and reconciles again. It returns the
// sources that could not be read, joined; their last good copies stay in
// use.
//
// Calling it again is a full steady-state pass (the load tool,
// cmd/calpresence-load, measures both).
func (e *Engine) FirstPass(ctx context.Context) error {
	e.startFromStore(ctx, nil)
	errs := e.feeds.pollAll(ctx, nil, false, nil)
	e.reconcile(ctx, nil)
	e.endFirstPass()
	return errors.Join(errs...)
}

// startFromStore, the first time it is called, loads the last good copy
// of every source and reconciles from them and the stored sessions before
// any feed is read: sessions whose span ended while the worker was down are
// cleared and spans in progress are set at once, however slow the feeds
// are. A user a source not loaded yet could concern is left alone until it
// is (Known). loaded, when not nil, is called as copies load, so that
// reconciles can begin before the last of 10,000 copies is parsed. The
// engine is ready after it.
func (e *Engine) startFromStore(ctx context.Context, loaded func()) {
	e.mu.Lock()
	first := e.started.IsZero()
	if first {
		e.started, e.firstPass = time.Now(), true
	}
	e.mu.Unlock()
	if !first {
		return
	}
	e.feeds.loadCache(loaded)
	e.reconcile(ctx, nil)
	e.mu.Lock()
	e.ready = true
	e.mu.Unlock()
}

// endFirstPass ends the start-up: until every source has been read once,
// reconciles log the changes they make for spans that began or ended
// before the start as "restart".
func (e *Engine) endFirstPass() {
	e.mu.Lock()
	e.firstPass = false
	e.mu.Unlock()
}

// throttle returns a function that calls fn, at most once every d: a
// call within d of the last is dropped.
func throttle(fn func(), d time.Duration) func() {
	var mu gosync.Mutex
	var last time.Time
	return func() {
		mu.Lock()
		now := time.Now()
		ok := last.IsZero() || now.Sub(last) >= d
		if ok {
			last = now
		}
		mu.Unlock()
		if ok {
			fn()
		}
	}
}

// kickReconcile asks Run's loop for a reconcile soon.
func (e *Engine) kickReconcile() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
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
	in.FirstPass, in.Started = e.firstPass, e.started
	e.mu.Unlock()
	actions, _ := Reconcile(in)
	results := e.exec.run(ctx, onlyUsers(actions, users))
	e.scheduleWake(e.nextWake(in))
	return results
}

// input gathers what Reconcile looks at, at now.
func (e *Engine) input(now time.Time) (ReconcileInput, error) {
	matches, known := e.feeds.snapshot()
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

// plan returns the actions a reconcile would take now, without taking them.
func (e *Engine) plan(users []string) []Action {
	in, err := e.input(time.Now())
	if err != nil {
		return nil
	}
	actions, _ := Reconcile(in)
	return onlyUsers(actions, users)
}

// gocronLogger adapts slog to gocron's logger.
type gocronLogger struct{ l *slog.Logger }

func (g gocronLogger) Debug(msg string, args ...any) { g.l.Debug("gocron: "+msg, args...) }
func (g gocronLogger) Info(msg string, args ...any)  { g.l.Debug("gocron: "+msg, args...) }
func (g gocronLogger) Warn(msg string, args ...any)  { g.l.Warn("gocron: "+msg, args...) }
func (g gocronLogger) Error(msg string, args ...any) { g.l.Error("gocron: "+msg, args...) }
