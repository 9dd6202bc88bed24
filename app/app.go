// Package app wires the daemon in one place: the state, the Graph client,
// the feed fetcher, the engine, the metrics, the HTTP server, the webhooks
// listener, the authenticate loop, reloads of the configuration and an
// orderly shutdown. The CLI (cmd/calpresence), the end-to-end tests (e2e)
// and the load tool (cmd/calpresence-load) all build their daemon with it;
// they may inject what a test must control (Options), never wire a second
// copy.
//
// The server and the webhooks reach the engine through the App, which
// delegates to the engine running now. There is one from start today; a
// replica that stands by (several replicas on PostgreSQL, one leading)
// would run none until it leads, and then call StartEngine: until then
// /readyz and the status page say why, and admin actions answer 503.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph"
	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/leader"
	"github.com/calpresence/calpresence/selfservice"
	"github.com/calpresence/calpresence/server"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/bolt"
	"github.com/calpresence/calpresence/state/mem"
	"github.com/calpresence/calpresence/state/pg"
	"github.com/calpresence/calpresence/sync/engine"
)

// stateLockTimeout bounds the wait for the state file: a resync or clear
// next to a daemon that holds it must fail fast, never hang.
const stateLockTimeout = 2 * time.Second

// App is the daemon built from a configuration. New opens what it needs;
// Run (or Start, then Wait) runs it; Close releases the state.
type App struct {
	log      *slog.Logger
	reg      *prometheus.Registry
	metrics  *engine.Metrics
	version  string
	listen   string
	bound    func(net.Addr)
	reloadOn <-chan os.Signal

	store      state.Store
	feeds      engine.FeedCache
	closeStore func() error
	graph      *graph.Client // nil when another Presence stands in for Graph
	ownGraph   bool          // New built graph: Close closes it
	graphOpts  []graph.Option
	rate       policy.Rate // presence writes: the Graph client's pacer and the engine keep to it
	memory     bool        // WithMemoryState
	presence   engine.Presence
	fetcher    engine.Fetcher
	started    *config.Config // what the daemon started with
	// elector is the leader election with several replicas (Start sets
	// it with state.driver postgres; replicas.go); nil with one.
	elector     *leader.Elector
	electorOpts leader.Options // WithElectorOptions

	token atomic.Pointer[string] // the admin token; a reload reads it again

	// feedKey opens the URLs of people's own feeds (selfservice.feeds);
	// nil when they are off.
	feedKey *selfservice.FeedKey

	mu     sync.Mutex // guards cfg, eng, down, reload
	cfg    *config.Config
	eng    *engine.Engine
	down   string // why no engine runs, when none does
	reload *engine.ReloadStatus

	reloadMu sync.Mutex // one reload at a time
	// reloads counts the reloads by result (ok, refused); reloadOK is 1
	// while the last one succeeded (or none was asked for).
	reloads  *prometheus.CounterVec
	reloadOK prometheus.Gauge

	// Set by Start, for Wait.
	cancel    context.CancelFunc
	engineErr chan error // an engine's Run returned
	srvErr    chan error // nil: no server
	wh        *webhooks
	self      *selfserviceListener
	bg        sync.WaitGroup // the server, the authenticate loop, the reload signals, the engines
}

// Option changes how New builds the App.
type Option func(*App)

// WithLogger logs to l (default: nowhere).
func WithLogger(l *slog.Logger) Option { return func(a *App) { a.log = l } }

// WithRegistry registers the metrics on reg and serves it on /metrics
// (default: a new registry with the Go and process collectors).
func WithRegistry(reg *prometheus.Registry) Option { return func(a *App) { a.reg = reg } }

// WithVersion names the build in the start line and the feeds' User-Agent.
func WithVersion(v string) Option { return func(a *App) { a.version = v } }

// WithListen serves on addr instead of server.listen ("127.0.0.1:0" for a
// free port), and calls bound, when not nil, with the address bound.
func WithListen(addr string, bound func(net.Addr)) Option {
	return func(a *App) { a.listen, a.bound = addr, bound }
}

// WithReloadSignals reloads the configuration at every value received
// from signals (SIGHUP), while Run runs.
func WithReloadSignals(signals <-chan os.Signal) Option {
	return func(a *App) { a.reloadOn = signals }
}

// WithFetcher reads the feeds with f instead of a sources.Fetcher built
// from the schedule settings.
func WithFetcher(f engine.Fetcher) Option { return func(a *App) { a.fetcher = f } }

// WithGraph uses a Graph client built already (a benchmark's warm one),
// which Close leaves open.
func WithGraph(c *graph.Client) Option { return func(a *App) { a.graph = c } }

// WithGraphOptions adds options to the Graph client New builds.
func WithGraphOptions(opts ...graph.Option) Option {
	return func(a *App) { a.graphOpts = append(a.graphOpts, opts...) }
}

// WithPresence sends presence calls to p instead of Graph (the load
// tool's counting fake): no Graph client is built, and no token awaited.
func WithPresence(p engine.Presence) Option { return func(a *App) { a.presence = p } }

// WithElectorOptions sets the leader election's options with several
// replicas (state.driver postgres); the App sets their Logger and
// Registerer. Tests use it to tell two replicas in one process apart (the
// default ID, hostname-pid, is the same for both) and to shorten timings.
func WithElectorOptions(o leader.Options) Option { return func(a *App) { a.electorOpts = o } }

// WithMemoryState keeps the state in memory, as a dry run does, instead of
// opening the state file.
func WithMemoryState() Option { return func(a *App) { a.memory = true } }

// New opens what the daemon needs for cfg (a configuration config.Load
// returned): the state, the Graph client (paced by the rate limit) and the
// feed fetcher; it drops the stored copies of sources no longer
// configured. A configuration problem is a *ConfigError; an unusable state
// file is returned as bolt.Open says it (bolt.ErrCorrupt, ErrLocked).
func New(ctx context.Context, cfg *config.Config, opts ...Option) (*App, error) {
	a := &App{cfg: cfg, started: cfg, down: "the engine has not started yet", engineErr: make(chan error, 1)}
	for _, o := range opts {
		o(a)
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.version == "" {
		a.version = "dev"
	}
	if a.reg == nil {
		a.reg = prometheus.NewRegistry()
		a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if a.listen == "" {
		a.listen = cfg.Server.Listen
	}
	a.metrics = engine.NewMetrics(a.reg)
	a.rate = policy.WriteRate(cfg.Graph)
	a.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "calpresence_config_reloads_total", Help: "Reloads of the configuration file by result: ok, refused (the configuration in force stays).",
	}, []string{"result"})
	a.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "calpresence_config_last_reload_successful", Help: "1 unless the last reload of the configuration was refused.",
	})
	a.reloadOK.Set(1)
	a.reg.MustRegister(a.reloads, a.reloadOK)
	token, err := AdminToken(cfg)
	if err != nil {
		return nil, &ConfigError{err}
	}
	a.token.Store(&token)
	if a.fetcher == nil {
		f, err := NewFetcher(cfg, a.version)
		if err != nil {
			return nil, &ConfigError{err}
		}
		a.fetcher = f
	}
	if sc := cfg.Selfservice; sc.Enabled() && sc.Feeds {
		key, err := selfservice.ReadKey(sc.CookieKeyFile)
		if err != nil {
			return nil, &ConfigError{fmt.Errorf("selfservice.cookie_key_file: %w", err)}
		}
		if a.feedKey, err = selfservice.NewFeedKey(key); err != nil {
			return nil, &ConfigError{err}
		}
	}
	a.store, a.feeds, a.closeStore, err = openStore(ctx, cfg, a.memory)
	if err != nil {
		return nil, err
	}
	if !replicated(cfg, a.memory) {
		// With several replicas, only the leader prunes (runReplica): a
		// standby of a new release must not drop a copy the leader of the
		// old one still reads.
		a.pruneFeeds(ctx, cfg, a.feeds)
	}
	switch {
	case a.presence != nil:
		a.graph = nil
	case a.graph == nil:
		g, err := newGraph(ctx, cfg, a.rate, a.log, append([]graph.Option{graph.WithRetryAfterObserver(a.metrics.ObserveRetryAfter)}, a.graphOpts...)...)
		if err != nil {
			_ = a.closeStore()
			return nil, fmt.Errorf("graph client: %w", err)
		}
		a.graph, a.ownGraph = g, true
	}
	if a.graph != nil {
		a.presence = a.graph
	}
	return a, nil
}

// newGraph builds the Graph client for cfg, paced as the daemon paces it:
// presence writes at rate (policy.WriteRate: graph.rate_limit per
// graph.rate_window), reads by Graph's own budget for them
// (policy.ReadRate). opts come last.
func newGraph(ctx context.Context, cfg *config.Config, rate policy.Rate, log *slog.Logger, opts ...graph.Option) (*graph.Client, error) {
	return graph.New(ctx, cfg.Graph, log, append([]graph.Option{graph.WithPacer(policy.NewPacer(rate)),
		graph.WithReadPacer(policy.NewPacer(policy.ReadRate))}, opts...)...)
}

// openStore opens the state the configuration names: the bbolt file at
// state.path, the PostgreSQL database at state.dsn (driver postgres), or
// memory for a dry run (and WithMemoryState). It is the one place that
// chooses the store. closeFn releases it.
func openStore(ctx context.Context, cfg *config.Config, memory bool) (store state.Store, feeds engine.FeedCache, closeFn func() error, err error) {
	switch {
	case cfg.Graph.DryRun || memory:
		// A dry run keeps no feed copies either: nil keeps them in memory.
		return mem.New(), nil, func() error { return nil }, nil
	case cfg.State.Driver == config.DriverPostgres:
		st, err := pg.Open(ctx, string(cfg.State.DSN), pg.Options{})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("state (%s): %w", cfg.State.DSN, err)
		}
		return st, st, st.Close, nil
	}
	st, err := bolt.Open(cfg.State.Path, stateLockTimeout)
	if err != nil {
		return nil, nil, nil, err // names the file already
	}
	return st, st, st.Close, nil
}

// pruneFeeds drops the stored copies in feeds of sources cfg does not
// name: they are of no use.
func (a *App) pruneFeeds(ctx context.Context, cfg *config.Config, feeds engine.FeedCache) {
	p, ok := feeds.(feedPruner)
	if !ok {
		return
	}
	names := make([]string, len(cfg.Sources))
	for i, s := range cfg.Sources {
		names[i] = s.Name
	}
	if err := p.DeleteFeedsExcept(ctx, names); err != nil {
		a.log.Warn("drop stored copies of removed sources", "err", err)
	}
}

// feedPruner drops the stored copies of sources not named; *bolt.Store
// and *pg.Store implement it.
type feedPruner interface {
	DeleteFeedsExcept(ctx context.Context, sources []string) error
}

// NewFetcher builds the feed fetcher the daemon uses, from the schedule
// settings; version names the build in its User-Agent.
func NewFetcher(cfg *config.Config, version string) (*sources.Fetcher, error) {
	f := sources.NewFetcher(cfg.Schedule.FetchTimeout, cfg.Schedule.MaxFeedBytes)
	f.UserAgent = "calpresence/" + version
	if cfg.Schedule.CAFile != "" {
		if err := f.TrustCAFile(cfg.Schedule.CAFile); err != nil {
			return nil, fmt.Errorf("schedule.ca_file: %w", err)
		}
	}
	return f, nil
}

// Close releases the state (and the Graph client New built). Call it
// after Run has returned.
func (a *App) Close() error {
	if a.ownGraph {
		a.graph.Close()
	}
	if a.elector != nil {
		_ = a.elector.Close()
	}
	return a.closeStore()
}

// Config returns the configuration in force (the last one reloaded).
func (a *App) Config() *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// Store is the state the App opened.
func (a *App) Store() engine.Store { return a.store }

// Registry is the registry of the App's metrics.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Engine returns the engine running now; nil when none does.
func (a *App) Engine() *engine.Engine {
	eng, _ := a.current()
	return eng
}

func (a *App) current() (*engine.Engine, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.eng, a.down
}

// NewEngine builds an engine on the App's state, Graph client and fetcher
// with the configuration in force, without running it: the one-off
// commands (resync, clear without a daemon) and the load tool drive it
// themselves. A configuration the engine refuses is a *ConfigError.
func (a *App) NewEngine(ctx context.Context) (*engine.Engine, error) {
	return a.newEngine(ctx, nil, nil)
}

// newEngine is NewEngine for a replica elected by el (nil: the only one),
// in its lead t (beginTerm): it writes through t's store, its scheduler
// runs only while el leads, no presence call is sent once it does not, and
// calls in flight are cut short when t.lost ends.
func (a *App) newEngine(ctx context.Context, el *leader.Elector, t *term) (*engine.Engine, error) {
	var authenticated func() bool
	if a.graph != nil {
		authenticated = a.graph.Authenticated
	}
	o := engine.Options{Config: a.Config(), Presence: a.presence, Store: a.store, Feeds: a.feeds,
		Fetcher: a.fetcher, Logger: a.log, Metrics: a.metrics, Authenticated: authenticated, Rate: a.rate}
	if a.feedKey != nil {
		o.OwnFeedURL = a.feedKey.Open
	}
	if w := o.Config.Webhooks; w != nil && w.Webex != nil {
		o.People = &webexPeople{config: a.Config}
	}
	if el != nil {
		o.Store, o.Feeds = t.store, t.feeds
		o.Presence = fencedPresence{Presence: a.presence, leading: el.Leading, lost: t.lost}
		o.Elector = el
	}
	eng, err := engine.New(ctx, o)
	if err != nil {
		return nil, &ConfigError{err}
	}
	return eng, nil
}

// StartEngine builds an engine (NewEngine) and runs it until ctx is done;
// from then on the server, the webhooks and reloads reach it. It is the
// one place an engine is started: Start calls it; a replica that stands by
// would call it when it becomes the leader.
func (a *App) StartEngine(ctx context.Context) (*engine.Engine, error) {
	eng, err := a.NewEngine(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.eng, a.down = eng, ""
	a.mu.Unlock()
	a.bg.Go(func() {
		err := eng.Run(ctx)
		select {
		case a.engineErr <- err:
		default:
		}
	})
	return eng, nil
}

// Run is the daemon: Start, then Wait.
func (a *App) Run(ctx context.Context) error {
	if err := a.Start(ctx); err != nil {
		return err
	}
	return a.Wait()
}

// Start starts the daemon and returns once it serves: the engine
// (StartEngine), the HTTP server on server.listen (or WithListen's
// address) with the status page, probes, metrics and admin actions, the
// authenticate loop, the webhooks listener and the reloads on signal. A
// listener that cannot bind stops the rest and is returned. Wait waits for
// the end.
func (a *App) Start(ctx context.Context) error {
	ctx, a.cancel = context.WithCancel(ctx)
	cfg := a.Config()
	a.log.Info("calpresence starting", "version", a.version, "sources", len(cfg.Sources), "dry_run", cfg.Graph.DryRun, "listen", a.listen)
	if replicated(cfg, a.memory) {
		el, err := a.newElector(cfg, true)
		if err != nil {
			a.cancel()
			return err
		}
		a.elector = el
		a.bg.Go(func() { a.engineErr <- a.runReplica(ctx) })
	} else if _, err := a.StartEngine(ctx); err != nil {
		a.cancel()
		return err
	}
	if a.listen != "" {
		a.srvErr = make(chan error, 1)
		// Asked at every request: a reload changes the token and the
		// names the pages answer (server.hostnames) in place.
		h := server.HandlerSettings(a, a.reg, func() server.Settings {
			return server.Settings{Token: *a.token.Load(), Hostnames: a.Config().Server.Hostnames}
		}, a.log)
		ready := make(chan struct{})
		a.bg.Go(func() {
			a.srvErr <- server.Serve(ctx, a.listen, h, cfg.Server.ShutdownTimeout, func(addr net.Addr) {
				a.log.Info("serving", "addr", addr.String())
				if a.bound != nil {
					a.bound(addr)
				}
				close(ready)
			})
		})
		select {
		case <-ready:
		case err := <-a.srvErr:
			// The listener failed (port taken): stop the worker too.
			a.cancel()
			a.bg.Wait()
			return err
		}
	}
	if a.graph != nil {
		a.bg.Go(func() { authenticate(ctx, a.graph, a.log) })
	}
	if a.reloadOn != nil {
		a.bg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-a.reloadOn:
					_, _ = a.Reload(ctx) // logged, and shown on /readyz
				}
			}
		})
	}
	inbox, _ := a.store.(signals.Store)
	a.wh = startWebhooks(ctx, cfg, a, inbox, a.reg, a.log) // webhooks.go
	self, err := startSelfservice(ctx, cfg, a, a.log)      // selfservice.go
	if err != nil {
		a.cancel()
		a.wh.wait()
		a.bg.Wait()
		return err
	}
	a.self = self
	return nil
}

// Wait waits until the daemon stops: its context is done (SIGTERM), or the
// engine or a listener fails, which stops the rest. Graph calls in flight
// finish and the state is written; sessions are not cleared (they expire
// by themselves, and a restart picks them up).
func (a *App) Wait() error {
	var err error
	select {
	case err = <-a.engineErr:
		a.cancel()
		if a.srvErr != nil {
			if serr := <-a.srvErr; err == nil {
				err = serr
			}
		}
	case err = <-a.srvErr: // never with no server (a nil channel)
		a.cancel()
		<-a.engineErr
	case err = <-a.wh.err:
		a.cancel()
		<-a.engineErr
	case err = <-a.self.err:
		a.cancel()
		<-a.engineErr
	}
	a.wh.wait()
	a.self.wait()
	a.bg.Wait()
	a.log.Info("calpresence stopped")
	return err
}

// authenticate asks Graph's authority for a token at start, and again with
// the policy's back-off until it answers (policy.Delay: 1 s, 2 s … 5 min):
// a broken secret shows at once, in the log and as /readyz 503, not at the
// first meeting. A refused credential is tried again too: a secret file
// replaced meanwhile is read at the next try.
func authenticate(ctx context.Context, g *graph.Client, log *slog.Logger) {
	for tries := 1; ; tries++ {
		err := g.Authenticate(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		wait := policy.Wait(err, tries)
		log.Error("no token from Graph's authority; not ready until there is one", "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
