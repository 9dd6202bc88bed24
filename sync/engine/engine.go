// Package engine turns calendar occurrences into Teams presence over time:
// it keeps the feeds' matches, wakes at the span boundaries (gocron), runs
// plan.Reconcile and carries out the actions it returns through Graph,
// and offers the operator actions, reload and the status view.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/identity"
	"github.com/calpresence/calpresence/sync/plan"
)

// Fetcher gets a feed. *sources.Fetcher implements it.
type Fetcher interface {
	Fetch(ctx context.Context, req sources.FetchRequest) (sources.FetchResult, error)
}

// FeedCache keeps the last good copy of each feed across restarts.
// Every state.Store implements it.
type FeedCache interface {
	Feed(ctx context.Context, source string) (state.Feed, bool, error)
	PutFeed(ctx context.Context, f state.Feed) error
	// PutFeeds stores several copies in one durable transaction: a pass
	// over thousands of feeds cannot afford an fsync for each.
	PutFeeds(ctx context.Context, fs []state.Feed) error
	// FeedHeads returns every stored copy without its body and with its
	// Expansion: what a restart reconciles from before parsing any copy.
	FeedHeads(ctx context.Context) ([]state.Feed, error)
}

// InboxEvery is how often the leader of several replicas applies the
// live meeting signals standbys queued (TakeInbox).
const InboxEvery = 2 * time.Second

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
	// Authenticated reports whether Graph's authority has issued a token
	// since start (graph.Client.Authenticated); /readyz is 503 until it
	// has. nil: no such check (tests, the one-off commands).
	Authenticated func() bool
	// Elector, with several replicas (state.driver postgres), is the
	// leader election: the engine's scheduler runs its jobs only while
	// this replica leads (gocron.WithDistributedElector). nil: one replica.
	Elector gocron.Elector
	// People looks up the address of a person a signal names by the
	// vendor's id only (Webex Calling's personId); nil: such signals are
	// ignored.
	People PersonLookup
	// Rate is the presence-write rate the Graph client's pacer keeps to
	// (policy.WriteRate of the configuration, computed once where the
	// daemon is wired); the gate and the burst lead follow it. The zero
	// Rate: policy.WriteRate(Config.Graph).
	Rate policy.Rate
	// OwnFeedURL opens the sealed URL of a person's own feed
	// (selfservice.FeedKey.Open): with it, people's own feeds in the store
	// are polled as sources (ownfeeds.go). nil: they are not
	// (selfservice.feeds off).
	OwnFeedURL func(state.OwnFeed) (string, error)
}

// Engine is the worker: it polls the sources, keeps their occurrences,
// and reconciles presence at every span boundary.
type Engine struct {
	// conf is the configuration in force; a reload replaces it
	// (reload.go).
	conf          atomic.Pointer[settings]
	startCfg      *config.Config // what it was built with: what needs a restart differs from it
	log           *slog.Logger
	metrics       *Metrics
	store         Store
	feeds         *feedSet
	dir           *identity.Directory
	exec          *executor
	started       time.Time
	rate          float64     // presence calls per second Graph allows (0: no limit)
	authenticated func() bool // nil: not checked
	sig           *signalSet  // live meeting signals (signals.go)
	pauses        *pauseSet   // people's pauses (pauses.go)
	calls         *ownCallSet // the calls people declare (owncalls.go)
	rb            *readback   // what Teams shows (readback.go)
	own           *ownFeedSet // people's own feeds (ownfeeds.go); nil: off

	// reloads hands Reload's configurations to Run's loop, so that a
	// reload is applied between reconciles (reload.go); stopped is
	// closed when Run returns.
	reloads chan reloadRequest
	stopped chan struct{}
	// ownKick asks Run's loop to put people's own feeds in force again
	// (ownfeeds.go).
	ownKick chan struct{}

	mu        sync.Mutex // guards running, ready, firstPass, started
	running   bool       // Run was called
	ready     bool
	firstPass bool

	// wrapScheduler, set by tests, stands between the engine and gocron.
	wrapScheduler func(gocron.Scheduler) gocron.Scheduler
	elector       gocron.Elector // Options.Elector
	personLookup  PersonLookup   // Options.People
	stopping      atomic.Bool    // Run's context is done (Accepting)
	lookups       lookupRetries  // signals waiting for their person (signals.go)

	viewMu    sync.Mutex // guards viewCache
	viewCache struct {
		gen     [6]uint64 // of the feed snapshot, the live signals, the directory, the settings, the pauses, the own calls
		matches []plan.Match
		spans   map[string][]plan.Span
	}

	// planCost is how long the last reconcile took to plan (its input and
	// plan.Reconcile, not its calls), in nanoseconds: kickSoon spaces the
	// reconciles of the first round by it.
	planCost atomic.Int64

	reconcileMu sync.Mutex // one reconcile at a time
	kick        chan struct{}
	wakeMu      sync.Mutex
	wakeAt      time.Time
	wakeJob     gocron.Job
	wakeTimer   *time.Timer // in place of wakeJob when gocron refused it
	sched       gocron.Scheduler
}

// SourceCounts counts the configured sources (/readyz): those with a copy
// in force, those whose last read failed, and those whose copy is stale.
type SourceCounts struct {
	Total   int `json:"total"`
	Loaded  int `json:"loaded"`
	Failing int `json:"failing"`
	Stale   int `json:"stale"`
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

// New builds an engine, reading the resolved addresses kept in the store
// under ctx. The configuration must have passed Validate.
func New(ctx context.Context, o Options) (*Engine, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	own := newOwnFeedSet(ctx, o.Store, o.OwnFeedURL, o.Logger)
	cfg := own.merge(o.Config)
	m, err := plan.NewMatcher(cfg)
	if err != nil {
		return nil, err
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	g := o.Config.Graph
	rate := o.Rate
	if !rate.Limited() {
		rate = policy.WriteRate(g)
	}
	dir := identity.New(o.Presence, o.Store, o.Config.Schedule.IdentityRefresh, g.MaxConcurrency, o.Logger, o.Metrics.forIdentity())
	if err := dir.Load(ctx); err != nil {
		// Not fatal: every address is looked up again.
		o.Logger.Warn("read resolved addresses", "err", err)
	}
	sessions := newSessionCache(o.Store)
	e := &Engine{
		log:          o.Logger,
		metrics:      o.Metrics,
		store:        sessions,
		feeds:        newFeedSet(cfg, o.Feeds, o.Fetcher, m, o.Logger, o.Metrics),
		dir:          dir,
		exec:         newExecutor(o.Presence, sessions, dir, policy.NewGate(g.MaxConcurrency, rate), o.Logger, o.Metrics),
		kick:         make(chan struct{}, 1),
		sig:          newSignalSet(ctx, o.Store, o.Logger),
		pauses:       newPauseSet(o.Store, o.Logger),
		calls:        newOwnCallSet(o.Store, o.Logger),
		rb:           newReadback(),
		own:          own,
		reloads:      make(chan reloadRequest),
		ownKick:      make(chan struct{}, 1),
		stopped:      make(chan struct{}),
		startCfg:     o.Config,
		elector:      o.Elector,
		personLookup: o.People,
	}
	e.conf.Store(newSettings(o.Config, cfg, m, 0, nil))
	e.rate = rate.PerSecond()
	e.authenticated = o.Authenticated
	e.feeds.installed = e.noteAddresses
	e.countOwnFeeds()
	e.exec.grace = o.Config.Server.ShutdownTimeout
	if e.exec.grace <= 0 {
		e.exec.grace = config.Default().Server.ShutdownTimeout
	}
	return e, nil
}

// settings is the configuration in force with what is derived from it.
type settings struct {
	base      *config.Config    // the operator's, as loaded
	cfg       *config.Config    // base with people's own feeds (ownfeeds.go)
	matcher   *plan.Matcher     // cfg compiled; says who cfg covers
	gen       uint64            // counts the reloads: the engine's spans follow it
	userIndex map[string]string // users: address → target, for signals
	// removed are the sources reloads removed since start, for the
	// reason their people's spans end with.
	removed map[string]bool
}

func newSettings(base, cfg *config.Config, m *plan.Matcher, gen uint64, removed map[string]bool) *settings {
	return &settings{base: base, cfg: cfg, matcher: m, gen: gen, userIndex: cfg.UserIndex(), removed: removed}
}

// sourceRemoved reports whether a reload removed the named source.
func (s *settings) sourceRemoved(name string) bool { return s.removed[name] }

// config returns the configuration in force.
func (e *Engine) config() *config.Config { return e.conf.Load().cfg }

// Run is the daemon: it loads the last good copies and reconciles from
// them and the stored sessions at once (the engine is then ready), reads
// every source, reconciling again as they answer, then polls each source at
// its interval and reconciles at every boundary until ctx is done. A feed
// that hangs delays nobody's change. A Reload is applied between two of its
// reconciles. Sessions are not cleared on the way out: they expire by
// themselves and a restart picks them up.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	e.running = true
	e.mu.Unlock()
	defer close(e.stopped)
	// From the moment it is told to stop, it takes no more signals
	// (Accepting): they go to the shared inbox.
	stopAccepting := context.AfterFunc(ctx, func() { e.stopping.Store(true) })
	defer stopAccepting()
	opts := []gocron.SchedulerOption{gocron.WithLogger(gocronLogger{e.log})}
	if e.elector != nil {
		opts = append(opts, gocron.WithDistributedElector(e.elector))
	}
	s, err := gocron.NewScheduler(opts...)
	if err != nil {
		return fmt.Errorf("start scheduler: %w", err)
	}
	if e.wrapScheduler != nil {
		s = e.wrapScheduler(s)
	}
	e.sched = s
	s.Start()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.resolveLoop(ctx)
	}()
	// The read-back: its own goroutine, so that a read in flight never
	// holds up a boundary (readback.go).
	wg.Go(func() { e.readbackLoop(ctx) })
	if e.sig.store != nil {
		// The inbox: the webhooks a standby received (several replicas),
		// those stored on receipt and not yet applied when the process
		// stopped, and the signals whose person could not be looked up
		// yet (Webex Calling's personId).
		wg.Go(func() {
			t := time.NewTicker(InboxEvery)
			defer t.Stop()
			for {
				e.TakeInbox(ctx)
				// Pauses and calls another replica stored (pauses.go, owncalls.go).
				if p, c := e.pauses.refresh(ctx, time.Now(), e.log), e.calls.refresh(ctx, time.Now(), e.log); p || c {
					e.kickReconcile()
				}
				// People's own feeds another replica added or removed:
				// put in force by Run's loop, never waited for here.
				if e.own.refresh(ctx, e.log) {
					e.kickOwnFeeds()
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	defer wg.Wait()
	if in, err := e.input(ctx, time.Now()); err == nil {
		e.scheduleWake(e.nextWake(ctx, in, nil))
	} else {
		e.log.Error("read sessions", "err", err)
		e.scheduleWake(time.Now().Add(time.Minute))
	}
	defer func() {
		// Finish in-flight calls; the state is written after each call.
		_ = s.Shutdown()
	}()
	safety := time.NewTicker(SafetyReconcile)
	defer safety.Stop()
	// The polls: one goroutine and a bounded pool of workers for all the
	// sources (sync/poller.go), stopped and waited for on the way out.
	pollCtx, stopPolls := context.WithCancel(ctx)
	var polls sync.WaitGroup
	polls.Go(func() {
		// The stored copies, reconciled as they load (kickSoon: a
		// second apart at least, each builds every user's spans).
		e.startFromStore(pollCtx, e.kickSoon())
		polls.Go(func() { e.feeds.runPolls(pollCtx, time.Now(), e.kickReconcile) })
		// The first round reads every source now, reconciling as they
		// answer, spaced as well (10,000 feeds answering in a
		// burst would otherwise have every user's spans built again for
		// each; the reconcile after the round catches up). A failing
		// source is logged and marked unhealthy by the poll itself; its
		// last good copy stays in force and it is polled again at its
		// interval.
		_ = e.feeds.pollAll(pollCtx, nil, false, e.kickSoon())
		if pollCtx.Err() == nil {
			e.reconcile(pollCtx, nil)
			e.endFirstPass()
		}
	})
	defer polls.Wait()
	defer stopPolls()
	// readNow reads the sources a reload added or changed at once,
	// reconciling as they answer; the reconcile after the reload already
	// drops what removed sources made busy.
	readNow := func(read []string) {
		if len(read) > 0 {
			polls.Go(func() {
				_ = e.feeds.pollAll(pollCtx, read, true, e.kickSoon())
				e.kickReconcile()
			})
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.kick:
		case <-safety.C:
		case req := <-e.reloads:
			report, read, err := e.applyReload(ctx, req.base, req.why)
			req.reply <- reloadReply{report, err}
			readNow(read)
		case <-e.ownKick:
			// People's own feeds changed (ownfeeds.go): the configuration
			// in force again, with them.
			_, read, err := e.applyReload(ctx, e.conf.Load().base, "own feeds changed")
			if err != nil {
				e.log.Warn("put people's own feeds in force", "err", err)
			}
			e.countOwnFeeds()
			readNow(read)
		}
		if ctx.Err() != nil {
			return nil // shutting down: no new pass
		}
		e.reconcile(ctx, nil)
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
	e.resolveNew(ctx) // no resolver loop runs beside a one-off pass
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
	e.feeds.loadCache(ctx, loaded)
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

// kickSoon returns a function that asks Run's loop for a reconcile
// (kickReconcile) as sources answer or stored copies load: at most once a
// second, and no sooner after the last than four times what its planning
// took. Each reconcile builds every person's spans; at 100,000 people that
// is most of a second, and one a second during the first round took most
// of a core from parsing the feeds that were still to come. The round ends
// with a reconcile of its own, and a boundary's wake-up is not throttled.
func (e *Engine) kickSoon() func() {
	return throttle(e.kickReconcile, func() time.Duration {
		return max(time.Second, 4*time.Duration(e.planCost.Load()))
	})
}

// throttle returns a function that calls fn, at most once every gap()
// (asked at each call): a call within it of the last is dropped.
func throttle(fn func(), gap func() time.Duration) func() {
	var mu sync.Mutex
	var last time.Time
	return func() {
		mu.Lock()
		now := time.Now()
		ok := last.IsZero() || now.Sub(last) >= gap()
		if ok {
			last = now
		}
		mu.Unlock()
		if ok {
			fn()
		}
	}
}

// noteAddresses tells the directory of the addresses in a source's new
// matches, so that the resolver looks them up at once (off any boundary's
// path), not only once a reconcile has met them. When they come from new
// content (changed), the addresses Entra did not know are looked up again
// at once too: the feed may name them for a user created since.
func (e *Engine) noteAddresses(matches []plan.Match, changed bool) {
	var addrs []string
	last := ""
	for i := range matches {
		if a := matches[i].User; a != last { // fixed users repeat in a row
			addrs = append(addrs, a)
			last = a
		}
	}
	e.dir.Note(addrs, changed)
}

// resolveNew looks up, now, every address the sources and the
// configuration name that the directory cannot answer yet. The first pass
// of a one-off resync has no resolver loop to do it later.
func (e *Engine) resolveNew(ctx context.Context) {
	matches, _ := e.feeds.snapshot()
	for i := range matches {
		e.dir.Lookup(matches[i].User)
	}
	for _, u := range e.config().ConfiguredUsers() {
		e.dir.Lookup(u)
	}
	e.dir.Resolve(ctx, e.dir.Due(time.Now()))
}

// resolveLoop keeps the directory answering ahead of the boundaries: it
// resolves the addresses that spans met and could not name, and refreshes
// the others when due, then reconciles when someone's identity changed.
// Lookups never run on a boundary's path. Every identity.ForgetEvery, once every
// source has been read, it has the directory forget the addresses no feed
// names any more (forgetUnnamed).
func (e *Engine) resolveLoop(ctx context.Context) {
	var nextForget time.Time
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(nextForget) && e.startedUp() {
			e.forgetUnnamed(ctx, now)
			nextForget = now.Add(identity.ForgetEvery)
		}
		due, next := e.dir.DueAt(now)
		if len(due) > 0 {
			if e.dir.Resolve(ctx, due) {
				e.kickReconcile()
			}
			continue // failures wait for their back-off: no hot loop
		}
		wait := time.Minute
		if !next.IsZero() && next.Sub(now) < wait {
			wait = max(next.Sub(now), time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-e.dir.Wanted():
		case <-t.C:
		}
		t.Stop()
	}
}

// startedUp reports whether the start is over: every source has been read
// once (or tried), so that the feeds' matches name everyone they will.
func (e *Engine) startedUp() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.started.IsZero() && !e.firstPass
}

// forgetUnnamed has the directory forget the addresses that no loaded
// feed has named for identity.ForgetAfter (directory.prune). The configuration's
// people (fixed users and both sides of users:) are never forgotten.
func (e *Engine) forgetUnnamed(ctx context.Context, now time.Time) {
	matches, _ := e.feeds.snapshot()
	named := make(map[string]bool)
	last := ""
	for i := range matches {
		if a := matches[i].User; a != last { // fixed users repeat in a row
			named[mailaddr.Normalize(a)] = true
			last = a
		}
	}
	conf := e.conf.Load()
	keep := make(map[string]bool)
	for _, u := range conf.cfg.ConfiguredUsers() {
		keep[mailaddr.Normalize(u)] = true
	}
	for a := range conf.userIndex {
		keep[a] = true
	}
	e.dir.Prune(ctx, now, named, keep)
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
	in, err := e.input(ctx, now)
	if err != nil {
		e.log.Error("read sessions", "err", err)
		e.scheduleWake(now.Add(time.Minute))
		return nil
	}
	e.mu.Lock()
	in.FirstPass, in.Started = e.firstPass, e.started
	e.mu.Unlock()
	actions, next := plan.Reconcile(in)
	e.planCost.Store(int64(time.Since(now)))
	if n := earlyStarts(actions, now); n > 0 {
		e.log.Info("burst of starts larger than the rate allows in a second: sending ahead of the boundary",
			"starts", n, "boundary", actions[0].Due, "lead", actions[0].Due.Sub(now).String())
	}
	results := e.exec.run(ctx, burstOrder(e.named(onlyUsers(actions, users))))
	if len(actions) == 0 {
		// Nothing was due, so nothing was sent: the plan's next boundary
		// stands (planning again would cost as much as this pass; at
		// 100,000 people, half of an idle minute's CPU).
		e.scheduleWake(e.nextWake(ctx, in, &next))
	} else {
		e.scheduleWake(e.nextWake(ctx, in, nil))
	}
	for _, r := range results {
		if r.Action.Op == plan.OpSet && r.Err == nil {
			e.rb.poke() // a burst of sets: read back what Teams shows
			break
		}
	}
	e.queueMessages(results, now)
	return results
}

// input gathers what Reconcile looks at, at now. People are keyed by the
// object ids the directory knows; matches whose address it cannot name yet
// are left out (and so noted for the resolver).
func (e *Engine) input(ctx context.Context, now time.Time) (plan.ReconcileInput, error) {
	matches, sourcesKnown, feedGen := e.feeds.snapshotGen()
	sessions, err := e.readSessions(ctx, true)
	if err != nil {
		return plan.ReconcileInput{}, err
	}
	key := e.keyFunc()
	matches, spans := e.view(ctx, matches, feedGen, now, key)
	cfg := e.config()
	return plan.ReconcileInput{
		Now: now, Spans: spans, Sessions: e.adoptMigrated(ctx, sessions),
		Matches: matches, Key: key, Known: e.knownFunc(sourcesKnown, matches), Held: e.exec.heldAt(now), MaxLease: cfg.Presence.MaxLease,
		Rate: e.rate, LeadBurst: cfg.Presence.LeadBurst, SourceRemoved: e.conf.Load().sourceRemoved,
	}, nil
}

// view returns the matches of feed snapshot generation feedGen with the
// live signals in force at now applied, and every person's spans from them.
// Both are built again only when the matches, the signals or the directory
// changed since the last call: a boundary's reconcile must cost what
// changed, not every person's spans from 200,000 matches (about a second
// at 10,000 feeds).
func (e *Engine) view(ctx context.Context, matches []plan.Match, feedGen uint64, now time.Time, key plan.KeyFunc) ([]plan.Match, map[string][]plan.Span) {
	sigs, sigGen := e.sig.at(ctx, now, e.log)
	conf := e.conf.Load()
	pauses, pauseGen := e.pauses.snapshot()
	calls, callGen := e.calls.snapshot()
	gen := [6]uint64{feedGen, sigGen, e.dir.Generation(), conf.gen, pauseGen, callGen}
	e.viewMu.Lock()
	defer e.viewMu.Unlock()
	if e.viewCache.spans == nil || e.viewCache.gen != gen {
		m := e.withOwnCalls(e.withSignals(matches, sigs, key), calls)
		e.viewCache.matches, e.viewCache.spans = m, cutPaused(plan.Spans(m, conf.cfg.Presence.MergeGap, key), pauses)
		e.viewCache.gen = gen
	}
	return e.viewCache.matches, e.viewCache.spans
}

// keyFunc names the person of a match by object id, from the directory's
// memory; with only_configured, only people the configuration names.
func (e *Engine) keyFunc() plan.KeyFunc {
	conf := e.conf.Load()
	var allowed map[string]bool
	if conf.matcher.Limited() {
		allowed = make(map[string]bool)
		for _, u := range conf.cfg.ConfiguredUsers() {
			if id, ok := e.dir.Lookup(u); ok {
				allowed[id] = true
			}
		}
	}
	return func(m *plan.Match) (string, bool) {
		id, ok := e.dir.Lookup(m.User)
		if !ok || (conf.matcher.OnlyConfigured(m.Source) && !allowed[id]) {
			return "", false
		}
		return id, true
	}
}

// knownFunc reports, per person, whether every source that could concern
// any of their addresses has been read.
//
// A person none of whose addresses the directory knows yet (a new leader
// whose predecessor stopped before it stored what it resolved; a session
// older than the resolved addresses) could be concerned by any source, and
// named by any address still being resolved: they are known only once
// every source has been read and no address in matches awaits its lookup.
// Otherwise a leader that takes over reconciles a recorded session before
// it can tell whose the meetings are, and clears a person in the middle of
// their meeting.
func (e *Engine) knownFunc(sourcesKnown func(address string) bool, matches []plan.Match) func(string) bool {
	var once sync.Once
	var pending bool
	awaiting := func() bool {
		once.Do(func() {
			for i := range matches {
				if u := matches[i].User; !e.dir.Resolved(u) {
					pending = true
					return
				}
			}
		})
		return pending
	}
	return func(id string) bool {
		addrs := e.dir.Addresses(id)
		if len(addrs) == 0 {
			return sourcesKnown(everySource) && !awaiting()
		}
		for _, a := range addrs {
			if !sourcesKnown(a) {
				return false
			}
		}
		return sourcesKnown("")
	}
}

// everySource asks a feedSet.knownFunc whether every source has been read.
const everySource = "\x00every source"

// adoptMigrated re-keys the sessions that a schema-1 state file held under
// an address the worker had never resolved, once the directory names
// their person; until then they are left out of the reconcile (there is
// no id to call Graph with). Graph holds one session per person, so a
// session the person already has is merged with it: the uncertain one
// wins, and the reconciler sets or clears it as the spans say.
func (e *Engine) adoptMigrated(ctx context.Context, sessions map[string]state.Session) map[string]state.Session {
	for key, sess := range sessions {
		if sess.UserID != "" {
			continue
		}
		delete(sessions, key)
		id, ok := e.dir.Lookup(sess.Address)
		if !ok {
			if e.dir.IsUnknown(sess.Address) {
				// Nobody to clear: a set for an address Entra does not
				// know cannot have reached anyone.
				e.log.Info("dropping a migrated session: its address names no Entra user", "address", sess.Address)
				if err := e.store.DeleteSession(ctx, key); err != nil {
					e.log.Warn("drop migrated session", "address", sess.Address, "err", err)
				}
			}
			continue
		}
		sess.UserID, sess.Address = id, ""
		if prev, ok := sessions[id]; ok {
			sess = state.MergeSessions(prev, sess)
		}
		if err := e.store.PutSession(ctx, sess); err != nil {
			e.log.Warn("adopt migrated session", "user_id", id, "err", err)
			continue
		}
		if err := e.store.DeleteSession(ctx, key); err != nil {
			e.log.Warn("adopt migrated session", "user_id", id, "err", err)
		}
		e.log.Info("migrated session adopted", "user", e.dir.UPN(id), "address", key)
		sessions[id] = sess
	}
	return sessions
}

// earlyStarts counts the sets of a burst that go out ahead of their span's
// start (ReconcileInput.LeadBurst).
func earlyStarts(actions []plan.Action, now time.Time) int {
	n := 0
	for _, a := range actions {
		if a.Op == plan.OpSet && a.Due.After(now) {
			n++
		}
	}
	return n
}

// burstOrder orders a pass's actions for sending: people going busy first
// (a start, a restart, a lease that lapsed), then people going free
// (clears), then the keep-alives, which have minutes of slack left; the
// record-only actions cost no call. Within each kind the order stays.
// With the gate and the rate allowing hundreds of calls a second, nothing
// waits long behind the starts.
func burstOrder(actions []plan.Action) []plan.Action {
	rank := func(a plan.Action) int {
		switch {
		case a.Op == plan.OpSet && a.Reason != plan.ReasonKeepAlive:
			return 0
		case a.Op == plan.OpClear:
			return 1
		case a.Op == plan.OpSet:
			return 2
		}
		return 3
	}
	slices.SortStableFunc(actions, func(a, b plan.Action) int { return rank(a) - rank(b) })
	return actions
}

// named fills in how each action's person is shown.
func (e *Engine) named(actions []plan.Action) []plan.Action {
	for i := range actions {
		actions[i].Name = e.dir.UPN(actions[i].User)
	}
	return actions
}

// onlyUsers keeps the actions for users (all when users is empty).
func onlyUsers(actions []plan.Action, users []string) []plan.Action {
	if len(users) == 0 {
		return actions
	}
	return slices.DeleteFunc(actions, func(a plan.Action) bool { return !slices.Contains(users, a.User) })
}

// nextWake is the next time a reconcile is due: now, when a boundary fell
// Due while the last pass was still sending its calls; else the next
// boundary of any span or session, or the end of a retry hold. It also
// refreshes the session and busy-user gauges.
//
// in is the input of the pass that just ran: its spans still hold (a poll
// that changes them kicks a new pass), only the time and the sessions
// have moved on. planned, when not nil, is the next boundary that pass's
// plan gave when it sent no call: the sessions are then as it read them,
// and it is not planned again.
func (e *Engine) nextWake(ctx context.Context, in plan.ReconcileInput, planned *time.Time) time.Time {
	now := time.Now()
	sessions, err := e.readSessions(ctx, false)
	if err != nil {
		return now.Add(time.Minute)
	}
	in.Now, in.Sessions, in.FirstPass = now, e.adoptMigrated(ctx, sessions), false
	in.Held = e.exec.heldAt(now)
	busy := 0
	for _, ss := range in.Spans {
		if _, ok := plan.SpanAt(ss, now); ok {
			busy++
		}
	}
	clearing, live := 0, 0
	held := e.exec.heldKinds(now)
	for _, sess := range in.Sessions {
		if sess.Pending == state.PendingClear {
			clearing++
		}
		if sess.HeldAt(now) {
			held[HoldOperator]++
		}
		if sess.Live(now) {
			live++ // not a record that is only an operator's hold
		}
	}
	e.metrics.UsersBusy.Set(float64(busy))
	e.metrics.Sessions.Set(float64(live))
	e.metrics.ClearsPending.Set(float64(clearing))
	for _, k := range heldKinds {
		e.metrics.PeopleHeld.WithLabelValues(k).Set(float64(held[k]))
	}
	var next time.Time
	if planned != nil {
		next = *planned
	} else {
		due, n := plan.Reconcile(in)
		if len(due) > 0 {
			return now
		}
		next = n
	}
	if r := e.exec.nextRelease(now); !r.IsZero() && (next.IsZero() || r.Before(next)) {
		next = r
	}
	return next
}

// SafetyReconcile is the longest Run goes without a reconcile, whatever the
// boundary wakes say: a wake lost for any reason costs at most this much
// (docs/architecture.md: a boundary can never be lost).
const SafetyReconcile = time.Minute

// scheduleWake (re)schedules the one-time boundary job at t. A t that is
// already due reconciles now. Should gocron refuse the job (it refuses a
// start time that has passed by the time it checks, after a GC pause on a
// busy machine), a plain timer takes its place: the boundary is never
// lost.
func (e *Engine) scheduleWake(t time.Time) {
	if e.sched == nil || t.IsZero() {
		return
	}
	e.wakeMu.Lock()
	defer e.wakeMu.Unlock()
	if e.wakeAt.Equal(t) && (e.wakeJob != nil || e.wakeTimer != nil) {
		return
	}
	if e.wakeJob != nil {
		_ = e.sched.RemoveJob(e.wakeJob.ID())
		e.wakeJob = nil
	}
	if e.wakeTimer != nil {
		e.wakeTimer.Stop()
		e.wakeTimer = nil
	}
	e.wakeAt = time.Time{}
	if !t.After(time.Now()) {
		e.kickReconcile()
		return
	}
	j, err := e.sched.NewJob(gocron.OneTimeJob(gocron.OneTimeJobStartDateTime(t)),
		gocron.NewTask(e.kickReconcile), gocron.WithName("boundary"))
	if err != nil {
		e.log.Warn("gocron refused the boundary job; a timer takes its place", "at", t, "err", err)
		e.wakeTimer = time.AfterFunc(time.Until(t), e.kickReconcile)
	} else {
		e.wakeJob = j
	}
	e.wakeAt = t
}

// plan returns the actions a reconcile would take now, without taking them.
func (e *Engine) plan(ctx context.Context, users []string) []plan.Action {
	in, err := e.input(ctx, time.Now())
	if err != nil {
		return nil
	}
	actions, _ := plan.Reconcile(in)
	return e.named(onlyUsers(actions, users))
}

// gocronLogger adapts slog to gocron's logger.
type gocronLogger struct{ l *slog.Logger }

func (g gocronLogger) Debug(msg string, args ...any) { g.l.Debug("gocron: "+msg, args...) }
func (g gocronLogger) Info(msg string, args ...any)  { g.l.Debug("gocron: "+msg, args...) }
func (g gocronLogger) Warn(msg string, args ...any)  { g.l.Warn("gocron: "+msg, args...) }
func (g gocronLogger) Error(msg string, args ...any) { g.l.Error("gocron: "+msg, args...) }
