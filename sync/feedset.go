package sync

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	gosync "sync"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/state"
)

// feedSet is the engine's view of its sources: the occurrences and matches
// of each, read from the network or from the last good copy kept in the
// feed cache, with each source's health. It is safe for concurrent use.
type feedSet struct {
	cfg     *config.Config
	log     *slog.Logger
	metrics *Metrics
	cache   FeedCache
	fetcher Fetcher
	matcher *Matcher

	mu    gosync.Mutex // guards feeds' contents
	feeds map[string]*feed
}

func newFeedSet(cfg *config.Config, cache FeedCache, fetcher Fetcher, m *Matcher, log *slog.Logger, metrics *Metrics) *feedSet {
	fs := &feedSet{cfg: cfg, log: log, metrics: metrics, cache: cache, fetcher: fetcher, matcher: m,
		feeds: make(map[string]*feed, len(cfg.Sources))}
	for i := range cfg.Sources {
		src := &cfg.Sources[i]
		fs.feeds[src.Name] = &feed{src: src, zone: cfg.SourceLocation(i)}
	}
	return fs
}

// has reports whether name is a configured source.
func (fs *feedSet) has(name string) bool {
	_, ok := fs.feeds[name]
	return ok
}

// statuses returns each source's status, sorted by name.
func (fs *feedSet) statuses() []SourceStatus {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var st []SourceStatus
	for _, name := range sortedKeys(fs.feeds) {
		f := fs.feeds[name]
		st = append(st, SourceStatus{Name: name, URL: sources.RedactURL(f.src.URL), Loaded: f.loaded, Healthy: f.healthy,
			LastError: f.lastErr, LastSuccess: f.lastOK, Occurrences: len(f.occs)})
	}
	return st
}

// snapshot returns every source's matches and the known function for
// Reconcile, consistent with each other.
func (fs *feedSet) snapshot() ([]Match, func(string) bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.allMatches(), fs.knownFunc()
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
	dropped    []string // Result.Dropped of the last good read
}

// loadCache reads the last good copy of every source from the feed cache,
// so that a restart knows the meetings before the network answers.
func (fs *feedSet) loadCache() {
	if fs.cache == nil {
		return
	}
	now := time.Now()
	for name, f := range fs.feeds {
		fs.mu.Lock()
		loaded := f.loaded
		fs.mu.Unlock()
		if loaded {
			continue // already read; the copy we hold is at least as new
		}
		c, ok, err := fs.cache.Feed(name)
		if err != nil {
			fs.log.Warn("read cached feed", "source", name, "err", err)
			continue
		}
		if !ok || c.URLHash != state.URLHash(f.src.URL) {
			continue
		}
		res, err := fs.expand(f, c.Body, now)
		if err != nil {
			fs.log.Warn("cached feed does not parse; ignored", "source", name, "err", err)
			continue
		}
		fs.mu.Lock()
		fs.install(f, res, now)
		f.validators, f.hash, f.lastOK = c.Validators, c.Hash, c.FetchedAt
		fs.mu.Unlock()
		fs.log.Info("last good copy loaded", "source", name, "fetched_at", c.FetchedAt, "occurrences", len(res.Occurrences))
	}
}

// pollAll reads the named sources (all when none) with bounded parallelism.
// The new copies go to the feed cache in batches, all written by the time
// it returns.
func (fs *feedSet) pollAll(ctx context.Context, names []string, force bool) []error {
	if len(names) == 0 {
		names = sortedKeys(fs.feeds)
	}
	keep, flush := fs.keepBatched()
	defer flush()
	errs := make([]error, len(names))
	parallel(len(names), fetchParallelism, func(i int) {
		_, errs[i] = fs.poll(ctx, names[i], force, keep)
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
func (fs *feedSet) keepBatched() (keep func(state.Feed), flush func()) {
	if fs.cache == nil {
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
			fs.storeFeeds(batch)
			clear(batch) // let the bodies go
		}
	}()
	return func(f state.Feed) { ch <- f }, func() { close(ch); <-done }
}

// storeFeeds writes a batch of last good copies; on failure it tries them
// one by one, so one bad record does not cost the others theirs.
func (fs *feedSet) storeFeeds(batch []state.Feed) {
	if len(batch) == 0 {
		return
	}
	if err := fs.cache.PutFeeds(batch); err == nil {
		return
	}
	for _, f := range batch {
		if err := fs.cache.PutFeed(f); err != nil {
			fs.log.Warn("keep last good copy", "source", f.Source, "err", err)
		}
	}
}

// poll fetches one source and, when it changed, parses and expands it. A
// failure keeps the last good copy: only a successfully parsed feed can
// remove events. It reports whether the occurrences changed. A new copy
// goes to the feed cache through keep, or at once when keep is nil.
func (fs *feedSet) poll(ctx context.Context, name string, force bool, keep func(state.Feed)) (bool, error) {
	f := fs.feeds[name]
	log := fs.log.With("source", name)
	now := time.Now()
	fs.mu.Lock()
	req := sources.FetchRequest{Name: name, URL: f.src.URL, Headers: f.src.Headers}
	stale := f.loaded && now.Sub(f.from) > fs.cfg.Schedule.Horizon/2
	// Without a feed cache (dry run) no body is kept to expand again when
	// the window has slid: a stale feed is fetched in full instead. (Kept
	// in memory, 10,000 feeds' bodies would take 900 MB.)
	if f.loaded && !force && !(stale && fs.cache == nil) {
		req.Prev = sources.Validators{ETag: f.validators.ETag, LastModified: f.validators.LastModified}
		req.PrevHash = f.hash
	}
	fs.mu.Unlock()

	res, err := fs.fetcher.Fetch(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		fs.unhealthy(f, "error", err, log)
		return false, &SourceError{name, err}
	}
	body := res.Body
	if res.NotModified {
		fs.metrics.FeedFetches.WithLabelValues(name, "not_modified").Inc()
		fs.healthy(f, now)
		if !stale {
			return false, nil
		}
		// The window has slid: expand the unchanged copy again.
		if body, err = fs.lastBody(f); err != nil {
			log.Warn("cannot re-expand unchanged feed", "err", err)
			return false, nil
		}
	}
	out, err := fs.expand(f, body, now)
	if err != nil {
		fs.unhealthy(f, "parse_error", err, log)
		return false, &SourceError{name, err}
	}
	if !res.NotModified {
		// One result per fetch: "ok" only for a body that parsed.
		fs.metrics.FeedFetches.WithLabelValues(name, "ok").Inc()
	}
	for _, w := range out.Warnings {
		log.Debug("feed warning", "warning", w)
	}
	fs.mu.Lock()
	changed := !slices.EqualFunc(f.occs, out.Occurrences, sameOccurrence) || !f.loaded
	fs.install(f, out, now)
	if !res.NotModified {
		f.validators = state.Validators{ETag: res.Validators.ETag, LastModified: res.Validators.LastModified}
		f.hash = res.Hash
	}
	f.healthy, f.lastErr, f.lastOK = true, "", now
	fs.mu.Unlock()
	fs.metrics.FeedHealthy.WithLabelValues(name).Set(1)
	fs.metrics.FeedLastSuccess.WithLabelValues(name).Set(float64(now.Unix()))
	if !res.NotModified && fs.cache != nil {
		c := state.Feed{Source: name, URLHash: state.URLHash(f.src.URL), Validators: state.Validators{ETag: res.Validators.ETag, LastModified: res.Validators.LastModified},
			Hash: res.Hash, Body: body, FetchedAt: now}
		if keep != nil {
			keep(c)
		} else if err := fs.cache.PutFeed(c); err != nil {
			log.Warn("keep last good copy", "err", err)
		}
	}
	if changed {
		log.Info("feed read", "events", out.Events, "occurrences", len(out.Occurrences), "warnings", len(out.Warnings))
	}
	return changed, nil
}

// lastBody reads the last good copy of f from the feed cache.
func (fs *feedSet) lastBody(f *feed) ([]byte, error) {
	if fs.cache == nil {
		return nil, errors.New("no feed cache")
	}
	c, ok, err := fs.cache.Feed(f.src.Name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("no stored copy")
	}
	return c.Body, nil
}

// expand parses body and expands it over [now-1h, now+horizon].
func (fs *feedSet) expand(f *feed, body []byte, now time.Time) (*sources.Result, error) {
	res, err := sources.ParseExpand(body, sources.ExpandOptions{
		From: now.Add(-time.Hour), To: now.Add(fs.cfg.Schedule.Horizon),
		Zone: f.zone, MaxPerEvent: fs.cfg.Schedule.MaxOccurrences,
	})
	if err != nil {
		return nil, err
	}
	// Descriptions (Zoom's and Webex's dial-in text, a kilobyte an event)
	// would be the bulk of what 10,000 feeds' occurrences hold, and only a
	// description filter reads them; without one, a changed description
	// changes nobody's presence either.
	res.Occurrences = compact(res.Occurrences, fs.matcher.usesDescription(f.src.Name))
	return res, nil
}

// install replaces the occurrences of f. fs.mu must be held.
func (fs *feedSet) install(f *feed, res *sources.Result, now time.Time) {
	f.occs = res.Occurrences
	f.matches = fs.matcher.Match(f.src.Name, f.occs)
	f.from, f.to = now.Add(-time.Hour), now.Add(fs.cfg.Schedule.Horizon)
	f.loaded = true
	f.warnings = len(res.Warnings)
	f.dropped = reportDropped(fs.log, fs.metrics, f.src.Name, f.dropped, res.Dropped)
	fs.metrics.FeedEvents.WithLabelValues(f.src.Name).Set(float64(len(f.occs)))
}

func (fs *feedSet) unhealthy(f *feed, result string, err error, log *slog.Logger) {
	fs.metrics.FeedFetches.WithLabelValues(f.src.Name, result).Inc()
	fs.metrics.FeedHealthy.WithLabelValues(f.src.Name).Set(0)
	fs.mu.Lock()
	was := f.healthy || f.lastErr == ""
	f.healthy, f.lastErr = false, err.Error()
	fs.mu.Unlock()
	if was {
		log.Warn("feed unreadable; keeping the last good copy", "err", err)
	} else {
		log.Debug("feed still unreadable", "err", err)
	}
}

func (fs *feedSet) healthy(f *feed, now time.Time) {
	fs.mu.Lock()
	was := f.healthy
	f.healthy, f.lastErr, f.lastOK = true, "", now
	fs.mu.Unlock()
	if !was {
		fs.log.Info("feed readable again", "source", f.src.Name)
	}
	fs.metrics.FeedHealthy.WithLabelValues(f.src.Name).Set(1)
	fs.metrics.FeedLastSuccess.WithLabelValues(f.src.Name).Set(float64(now.Unix()))
}

// allMatches gathers the matches of every source. fs.mu must be held.
func (fs *feedSet) allMatches() []Match {
	var matches []Match
	for _, name := range sortedKeys(fs.feeds) {
		matches = append(matches, fs.feeds[name].matches...)
	}
	return matches
}

// knownFunc reports, per address, whether every source that could concern
// it has been read. fs.mu must be held.
func (fs *feedSet) knownFunc() func(string) bool {
	matchUnloaded := false
	unknownFixed := make(map[string]bool)
	for _, f := range fs.feeds {
		if f.loaded {
			continue
		}
		if f.src.Match != "" {
			matchUnloaded = true
		}
		for _, u := range f.src.Users {
			unknownFixed[state.NormalizeAddress(u)] = true
		}
	}
	// address is normalised (the directory's form); "" asks about the
	// match sources only.
	return func(address string) bool { return !matchUnloaded && !unknownFixed[address] }
}

func sameOccurrence(a, b sources.Occurrence) bool {
	return a.UID == b.UID && a.RecurrenceID.Equal(b.RecurrenceID) && a.Start.Equal(b.Start) && a.End.Equal(b.End) &&
		a.Status == b.Status && a.Transparent == b.Transparent && a.AllDay == b.AllDay &&
		a.Summary == b.Summary && a.Location == b.Location && a.Description == b.Description &&
		a.Organizer == b.Organizer && slices.Equal(a.Attendees, b.Attendees) && slices.Equal(a.MeetingKeys, b.MeetingKeys)
}
