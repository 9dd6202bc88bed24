package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/sources/ical"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/plan"
)

// feedSet is the engine's view of its sources: the occurrences and matches
// of each, read from the network or from the last good copy kept in the
// feed cache, with each source's health. It is safe for concurrent use.
type feedSet struct {
	log     *slog.Logger
	metrics *Metrics
	cache   FeedCache
	fetcher Fetcher

	// slots holds a token for every poll in progress (fetch and parse):
	// scheduled polls, the first pass and resyncs share concurrency of them.
	slots       chan struct{}
	concurrency int

	mu sync.Mutex // guards feeds (the map and their contents), cfg, matcher and the snapshot
	// cfg and matcher are the configuration in force and its compiled
	// filters; a reload (reload.go) replaces both.
	cfg     *config.Config
	matcher *plan.Matcher
	feeds   map[string]*feed
	// added are the feeds a reload added or replaced since the poller last
	// looked, and addedKick tells it (poller.go).
	added     []*feed
	addedKick chan struct{}
	// installed, when set, is told of each source's new matches as they
	// are installed (the engine notes their addresses for the resolver, so
	// that lookups run while the other feeds are still being read), and
	// whether they come from new content: a body that was not the copy in
	// force, whose occurrences changed. It is called with mu held.
	installed func(matches []plan.Match, changed bool)
	// snap caches allMatches and knownFunc between changes: a reconcile
	// at every boundary must not gather 200,000 matches again when no
	// source has changed since the last.
	snap struct {
		valid   bool
		gen     uint64 // counts the changes: the engine's spans follow it
		matches []plan.Match
		known   func(string) bool
	}
	// healthMemo keeps what health gave /readyz (not all) while no source
	// is added, removed, loaded for the first time, fails or recovers
	// (each bumps healthGen), and until the first copy in force could
	// turn stale.
	healthGen  uint64
	healthMemo struct {
		valid   bool
		gen     uint64
		limit   int
		until   time.Time
		counts  SourceCounts
		pick    []*feed
		flagged int
	}
}

func newFeedSet(cfg *config.Config, cache FeedCache, fetcher Fetcher, m *plan.Matcher, log *slog.Logger, metrics *Metrics) *feedSet {
	n := fetchConcurrency(cfg)
	fs := &feedSet{cfg: cfg, log: log, metrics: metrics, cache: cache, fetcher: fetcher, matcher: m,
		slots: make(chan struct{}, n), concurrency: n,
		feeds: make(map[string]*feed, len(cfg.Sources)), addedKick: make(chan struct{}, 1)}
	for i := range cfg.Sources {
		fs.feeds[cfg.Sources[i].Name] = fs.newFeed(cfg, i)
	}
	return fs
}

// newFeed is what the engine knows of source i of cfg before it is read.
func (fs *feedSet) newFeed(cfg *config.Config, i int) *feed {
	src := &cfg.Sources[i]
	every := min(cfg.Schedule.Horizon, maxCopyAge(cfg)) / 2
	h := fnv.New32a()
	h.Write([]byte(src.Name))
	return &feed{src: src, zone: cfg.SourceLocation(i), interval: cfg.SourcePollInterval(i), redacted: sources.RedactURL(src.URL),
		// Spread the re-expansions of copies read at the same time
		// (all of them, after a start) over a quarter of the period.
		expandEvery: every - time.Duration(h.Sum32())%max(every/4, 1),
		series:      fs.newSeries(src.Name)}
}

// newSeries returns the named source's metrics, with the series a source
// shows before it is read.
func (fs *feedSet) newSeries(name string) *sourceSeries {
	s := fs.metrics.Feeds.source(name)
	s.touchFetched("not_modified")
	s.touch(gaugeHealthy, gaugeLastSuccess, gaugeStale)
	return s
}

// maxCopyAge is cfg's schedule.max_copy_age, or its default.
func maxCopyAge(cfg *config.Config) time.Duration {
	if d := cfg.Schedule.MaxCopyAge; d > 0 {
		return d
	}
	return config.Default().Schedule.MaxCopyAge
}

// has reports whether name is a configured source.
func (fs *feedSet) has(name string) bool {
	return fs.get(name) != nil
}

// get returns the feed of the named source; nil when there is none (any
// more: a reload removed it).
func (fs *feedSet) get(name string) *feed {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.feeds[name]
}

// names returns the configured sources' names, sorted.
func (fs *feedSet) names() []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return sortedKeys(fs.feeds)
}

// current reports whether f is still the feed in force for its source
// (not removed or replaced by a reload). fs.mu must be held.
func (fs *feedSet) current(f *feed) bool {
	return fs.feeds[f.src.Name] == f
}

// rules returns the configuration and matcher in force.
func (fs *feedSet) rules() (*config.Config, *plan.Matcher) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.cfg, fs.matcher
}

// statuses returns each configured source's status, sorted by name; the
// sources people's own feeds make are left out (ownStatuses). The age of
// the copy in force is given for the sources that are failing or stale.
func (fs *feedSet) statuses() []SourceStatus {
	_, st, _ := fs.health(true, 0, time.Now())
	return st
}

// health counts the operator's sources (not people's own feeds) and
// returns, by name, the status of every one (all) or of the first limit
// that want a look (not loaded, failing or stale), and how many are
// failing or stale. Without all it builds no status for a healthy source,
// sorts nothing but the few it returns, and answers from what it found
// last while nothing has changed (healthMemo): /readyz is asked every
// 5 s, and listing 100,000 sources took half a second a time.
func (fs *feedSet) health(all bool, limit int, now time.Time) (c SourceCounts, st []SourceStatus, flagged int) {
	byName := func(a, b *feed) int { return strings.Compare(a.src.Name, b.src.Name) }
	fs.mu.Lock()
	defer fs.mu.Unlock()
	h := &fs.healthMemo
	if !all && h.valid && h.gen == fs.healthGen && h.limit == limit && now.Before(h.until) {
		return h.counts, fs.statusesOf(h.pick, now), h.flagged
	}
	var pick []*feed
	maxAge := maxCopyAge(fs.cfg)
	until := now.Add(maxAge)
	for _, f := range fs.feeds {
		if f.src.Owner != "" {
			continue
		}
		c.Total++
		stale, failing := staleAfter(f, now, maxAge), !f.healthy && f.lastErr != ""
		if f.loaded {
			c.Loaded++
			if at := f.lastOK.Add(maxAge); !stale && at.Before(until) {
				until = at // the first copy that could turn stale
			}
		}
		if failing {
			c.Failing++
		}
		if stale {
			c.Stale++
		}
		if stale || failing {
			flagged++
		}
		switch {
		case all:
			pick = append(pick, f)
		case f.loaded && !failing && !stale:
		case len(pick) < limit || byName(f, pick[limit-1]) < 0:
			// Kept sorted, limit long: most sources are compared with
			// the last only.
			i, _ := slices.BinarySearchFunc(pick, f, byName)
			pick = slices.Insert(pick, i, f)
			pick = pick[:min(len(pick), limit)]
		}
	}
	if all {
		slices.SortFunc(pick, byName)
	} else {
		h.valid, h.gen, h.limit, h.until = true, fs.healthGen, limit, until
		h.counts, h.pick, h.flagged = c, pick, flagged
	}
	return c, fs.statusesOf(pick, now), flagged
}

// statusesOf returns the status of each of feeds at now; fs.mu must be
// held.
func (fs *feedSet) statusesOf(feeds []*feed, now time.Time) []SourceStatus {
	st := make([]SourceStatus, len(feeds))
	for i, f := range feeds {
		st[i] = fs.status(f, now)
	}
	return st
}

// ownStatuses returns the status of each source an own feed makes, by
// source name, for the person's page and the counts (OwnFeedCount).
func (fs *feedSet) ownStatuses() map[string]SourceStatus {
	now := time.Now()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := make(map[string]SourceStatus)
	for name, f := range fs.feeds {
		if f.src.Owner != "" {
			out[name] = fs.status(f, now)
		}
	}
	return out
}

// status is f's status at now; fs.mu must be held.
func (fs *feedSet) status(f *feed, now time.Time) SourceStatus {
	s := SourceStatus{Name: f.src.Name, URL: f.redacted, Loaded: f.loaded, Healthy: f.healthy,
		LastError: f.lastErr, LastSuccess: f.lastOK, Occurrences: f.occs, Stale: fs.stale(f, now)}
	if f.loaded && (!f.healthy || s.Stale) {
		s.CopyAge = now.Sub(f.lastOK).Round(time.Second).String()
	}
	return s
}

// stale reports whether the copy of f in force is older than max_copy_age:
// last confirmed (fetched, or answered 304) longer ago than that. fs.mu
// must be held.
func (fs *feedSet) stale(f *feed, now time.Time) bool {
	return staleAfter(f, now, maxCopyAge(fs.cfg))
}

// staleAfter is stale with maxAge, the max_copy_age in force, at hand.
func staleAfter(f *feed, now time.Time, maxAge time.Duration) bool {
	return f.loaded && now.Sub(f.lastOK) > maxAge
}

// snapshot returns every source's matches and the known function for
// Reconcile, consistent with each other.
func (fs *feedSet) snapshot() ([]plan.Match, func(string) bool) {
	m, k, _ := fs.snapshotGen()
	return m, k
}

// snapshotGen is snapshot with the snapshot's generation, which changes
// whenever a source's matches do: what is built from the matches (the
// engine's spans) can be kept while it stays the same.
func (fs *feedSet) snapshotGen() ([]plan.Match, func(string) bool, uint64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !fs.snap.valid {
		fs.snap.matches, fs.snap.known, fs.snap.valid = fs.allMatches(), fs.knownFunc(), true
		fs.snap.gen++
	}
	return fs.snap.matches, fs.snap.known, fs.snap.gen
}

// feed is what the engine knows of one source.
type feed struct {
	src      *config.Source
	zone     *time.Location
	interval time.Duration
	redacted string // src.URL without its secrets, for the status view

	// pollMu is held through a poll of the source: one at a time.
	pollMu sync.Mutex

	// The rest is guarded by feedSet.mu.
	loaded  bool // occurrences come from a good copy (network or cache)
	healthy bool
	lastErr string
	// lastOK is when the copy in force was last confirmed: fetched, or
	// answered "not modified" (after a restart: when the stored copy was).
	lastOK     time.Time
	validators state.Validators
	hash       [32]byte // of the copy in force
	storedHash [32]byte // of the copy in the feed cache, as far as we know
	// occs counts the occurrences of the copy in force, and digest
	// identifies them; the matches hold what is kept of them (plan.Occurrence).
	occs     int
	digest   occDigest
	matches  []plan.Match
	warnings int
	dropped  []string // Result.Dropped of the last good read
	// The occurrences were expanded at expandedAt, and are expanded again
	// from the copy in force every expandEvery: the window slides, and
	// max_copy_age runs from lastOK.
	expandedAt  time.Time
	expandEvery time.Duration
	// refused is the hash of the last body refused (it did not parse, or
	// is over a cap), with why: the same body again is refused unparsed.
	refused       [32]byte
	refusedErr    error
	refusedResult string
	// rematch: a reload changed how the copy in force is expanded or
	// matched; the next expansion counts as a change even when the
	// occurrences are the same.
	rematch bool
	// added: a reload added the source. Nobody can be busy because of a
	// copy of it, so its not being read yet holds back nobody's clear
	// (knownFunc).
	added        bool
	failingSince time.Time
	lastWarn     time.Time // of a failure or staleness, to warn at most every failWarnEvery
	staleNoted   bool

	series *sourceSeries // the source's metrics
}

// failWarnEvery is how often a source that keeps failing is logged at
// Warn (in between, at Debug).
const failWarnEvery = 5 * time.Minute

// loadCache reads the last good copy of every source from the feed cache,
// so that a restart knows the meetings before the network answers. First
// the occurrences stored with each copy (loadExpansions): no copy is
// parsed, so that what is due at start goes out within seconds however
// many sources there are. Then, in parallel, one per core, the copies
// whose occurrences could not be used (none stored, made under other
// settings, too old). changed, when not nil, is called after each source
// loaded. A copy older than max_copy_age is stale from the start: its
// future events do not count.
func (fs *feedSet) loadCache(ctx context.Context, changed func()) {
	if fs.cache == nil {
		return
	}
	now := time.Now()
	stored := fs.loadExpansions(ctx, now, changed)
	var parsed atomic.Int64
	defer func() {
		fs.log.Info("stored copies loaded", "sources", len(fs.names()), "from_stored_occurrences", stored,
			"parsed", parsed.Load(), "took", time.Since(now).Round(time.Millisecond))
	}()
	names := fs.names()
	parallel(len(names), runtime.GOMAXPROCS(0), func(i int) {
		name := names[i]
		f := fs.get(name)
		if f == nil {
			return // removed by a reload meanwhile
		}
		fs.mu.Lock()
		loaded := f.loaded
		fs.mu.Unlock()
		if loaded {
			return // already read; the copy we hold is at least as new
		}
		c, ok, err := fs.cache.Feed(ctx, name)
		if err != nil {
			fs.log.Warn("read cached feed", "source", name, "err", err)
			return
		}
		if !ok || c.URLHash != state.URLHash(f.src.URL) {
			return
		}
		x, err := fs.expand(f, c.Body, now, c.FetchedAt)
		if err != nil {
			fs.log.Warn("cached feed refused; ignored", "source", name, "err", err)
			return
		}
		fs.mu.Lock()
		if f.loaded || !fs.current(f) {
			fs.mu.Unlock()
			return
		}
		fs.install(f, x, now, false)
		parsed.Add(1)
		fs.loadedCopy(f, c, len(x.occs), now, "copy", changed)
	})
}

// loadedCopy notes, after install, that f's occurrences come from c, the
// stored copy (from says how: "copy" parsed, "expansion" stored with it),
// and tells changed. fs.mu must be held; loadedCopy releases it.
func (fs *feedSet) loadedCopy(f *feed, c state.Feed, occs int, now time.Time, from string, changed func()) {
	f.validators, f.hash, f.storedHash, f.lastOK = c.Validators, c.Hash, c.Hash, c.FetchedAt
	stale := fs.stale(f, now)
	f.staleNoted = stale
	fs.mu.Unlock()
	fs.log.Debug("last good copy loaded", "source", c.Source, "fetched_at", c.FetchedAt, "occurrences", occs, "from", from)
	if changed != nil {
		changed()
	}
	if stale {
		f.series.set(gaugeStale, 1)
		fs.log.Warn("last good copy is stale: its events after max_copy_age do not count until the feed is read",
			"source", c.Source, "fetched_at", c.FetchedAt, "copy_age", now.Sub(c.FetchedAt).Round(time.Second))
	}
}

// expansionVersion is part of every expansion's key: raise it when a
// change of the parser or of compact changes the occurrences a copy
// expands to, so that expansions stored by an earlier build are not used.
const expansionVersion = 1

// expansionKey names what f's expansion depends on besides its copy and
// the time: an expansion stored under another key was made under other
// settings (a zone, the horizon, a cap, a description filter) and is not
// used.
func (fs *feedSet) expansionKey(f *feed) string {
	cfg, matcher := fs.rules()
	sc := cfg.Schedule
	return fmt.Sprintf("v%d zone=%s horizon=%s per_event=%d events=%d occurrences=%d copy_age=%s descriptions=%t",
		expansionVersion, f.zone, sc.Horizon, sc.MaxOccurrences, sc.MaxFeedEvents, sc.MaxFeedOccurrences,
		maxCopyAge(cfg), matcher.UsesDescription(f.src.Name))
}

// loadExpansions installs the occurrences stored with each copy (one read
// of the store, no body, no parse) for the sources they still serve: the
// same URL, the same settings, made at most half a horizon ago (every copy
// in force is expanded again, and stored, at least that often), so that
// they cover now and what follows it until the copy is expanded again at
// its first poll. The copy's own re-expansion is due from when they were
// made. It returns how many sources it loaded.
func (fs *feedSet) loadExpansions(ctx context.Context, now time.Time, changed func()) int {
	heads, err := fs.cache.FeedHeads(ctx)
	if err != nil {
		fs.log.Warn("read stored occurrences; parsing the copies instead", "err", err)
		return 0
	}
	var n atomic.Int64
	cfg, matcher := fs.rules()
	horizon := cfg.Schedule.Horizon
	parallel(len(heads), runtime.GOMAXPROCS(0), func(i int) {
		c := heads[i]
		heads[i] = state.Feed{} // let each go once installed
		f := fs.get(c.Source)
		e := c.Expansion
		if f == nil || e.Occurrences == nil || c.URLHash != state.URLHash(f.src.URL) ||
			e.At.After(now.Add(time.Minute)) || now.Sub(e.At) > horizon/2 || e.Key != fs.expansionKey(f) {
			return
		}
		occs, err := ical.DecodeOccurrences(e.Occurrences)
		if err != nil {
			fs.log.Warn("stored occurrences unreadable; parsing the copy instead", "source", c.Source, "err", err)
			return
		}
		x, err := matchOccurrences(cfg, matcher, c.Source, occs)
		if err != nil {
			return // the copy is parsed, and refused, with its reason
		}
		fs.mu.Lock()
		if f.loaded || !fs.current(f) {
			fs.mu.Unlock()
			return
		}
		fs.install(f, x, e.At, false)
		n.Add(1)
		fs.loadedCopy(f, c, len(occs), now, "expansion", changed)
	})
	return int(n.Load())
}

// pollAll reads the named sources (all when none) with bounded parallelism,
// calling changed (when not nil) after each poll that changed a source's
// occurrences. The new copies go to the feed cache in batches, all written
// by the time it returns.
func (fs *feedSet) pollAll(ctx context.Context, names []string, force bool, changed func()) []error {
	if len(names) == 0 {
		names = fs.names()
	}
	keep, flush := fs.keepBatched(ctx)
	defer flush()
	errs := make([]error, len(names))
	parallel(len(names), fs.concurrency, func(i int) {
		var ch bool
		ch, errs[i] = fs.poll(ctx, names[i], force, keep)
		if ch && changed != nil {
			changed()
		}
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
func (fs *feedSet) keepBatched(ctx context.Context) (keep func(state.Feed), flush func()) {
	if fs.cache == nil {
		return nil, func() {}
	}
	// A copy fetched is stored even when ctx ends (shutdown): flush
	// waits for it, and the store bounds each write itself.
	ctx = context.WithoutCancel(ctx)
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
			fs.storeFeeds(ctx, batch)
			clear(batch) // let the bodies go
		}
	}()
	return func(f state.Feed) { ch <- f }, func() { close(ch); <-done }
}

// storeFeeds writes a batch of last good copies; on failure it tries them
// one by one, so one bad record does not cost the others theirs.
func (fs *feedSet) storeFeeds(ctx context.Context, batch []state.Feed) {
	if len(batch) == 0 {
		return
	}
	if err := fs.cache.PutFeeds(ctx, batch); err == nil {
		for _, c := range batch {
			fs.stored(c)
		}
		return
	}
	for _, c := range batch {
		fs.storeFeed(ctx, c)
	}
}

// storeFeed writes one last good copy.
func (fs *feedSet) storeFeed(ctx context.Context, c state.Feed) {
	if err := fs.cache.PutFeed(ctx, c); err != nil {
		fs.log.Warn("keep last good copy", "source", c.Source, "err", err)
		return
	}
	fs.stored(c)
}

// stored notes that c is the copy in the feed cache.
func (fs *feedSet) stored(c state.Feed) {
	fs.mu.Lock()
	if f := fs.feeds[c.Source]; f != nil && state.URLHash(f.src.URL) == c.URLHash {
		f.storedHash = c.Hash
	}
	fs.mu.Unlock()
}

// poll fetches one source and, when it changed, parses and expands it. A
// failure keeps the last good copy: only a successfully parsed feed can
// remove events. It reports whether the occurrences changed. A new copy
// goes to the feed cache through keep, or at once when keep is nil.
//
// A scheduled poll (not force) skips a source that is being read already.
// A source a reload removed is not read; what a reload replaced while it
// was being read is dropped.
func (fs *feedSet) poll(ctx context.Context, name string, force bool, keep func(state.Feed)) (bool, error) {
	f := fs.get(name)
	if f == nil {
		return false, nil
	}
	if force {
		f.pollMu.Lock()
	} else if !f.pollMu.TryLock() {
		return false, nil
	}
	defer f.pollMu.Unlock()
	select {
	case fs.slots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-fs.slots }()

	now := time.Now()
	fs.mu.Lock()
	loaded, hash, validators := f.loaded, f.hash, f.validators
	inStore := f.storedHash == f.hash
	reexpand := loaded && !now.Before(f.expandedAt.Add(f.expandEvery))
	fs.mu.Unlock()
	// Time has moved on: the copy in force is expanded again, whether the
	// feed answers "not modified" or fails. The body comes from the feed
	// cache, and only when it is the copy in force (its write may have
	// failed, leaving an older one there).
	var stored []byte
	if reexpand && fs.cache != nil {
		stored = fs.storedBody(ctx, f, hash)
	}
	req := sources.FetchRequest{Name: name, URL: f.src.URL, Headers: f.src.Headers, AllowPrivate: f.src.AllowPrivate, PublicOnly: f.src.PublicOnly}
	// A "not modified" applies to the copy in force, and is asked for only
	// when that copy is all we need. Without it in the feed cache (a failed
	// write; or a dry run, which keeps no bodies, when the copy is due to
	// be expanded again: 10,000 feeds' bodies would take 900 MB) the feed
	// is fetched in full instead.
	switch {
	case !loaded || force:
	case fs.cache == nil && reexpand:
	case fs.cache != nil && (!inStore || (reexpand && stored == nil)):
	default:
		req.Prev = sources.Validators{ETag: validators.ETag, LastModified: validators.LastModified}
		req.PrevHash = hash
	}

	res, err := fs.fetcher.Fetch(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return fs.failed(f, "error", err, stored, now)
	}
	body := res.Body
	if res.NotModified {
		f.series.fetched("not_modified")
		if stored == nil {
			fs.healthy(f, now)
			return false, nil
		}
		body = stored
	} else {
		fs.mu.Lock()
		refused, why, result := res.Hash == f.refused && res.Hash != [32]byte{}, f.refusedErr, f.refusedResult
		fs.mu.Unlock()
		if refused {
			// The body refused last time, again: no need to parse it.
			return fs.failed(f, result, why, stored, now)
		}
	}
	x, err := fs.expand(f, body, now, now)
	if err != nil {
		result := "parse_error"
		if errors.Is(err, ical.ErrOverLimit) {
			result = "over_limit"
		}
		if res.NotModified {
			stored = nil // the stored copy itself is refused (a cap lowered since)
		} else {
			fs.mu.Lock()
			f.refused, f.refusedErr, f.refusedResult = res.Hash, err, result
			fs.mu.Unlock()
		}
		return fs.failed(f, result, err, stored, now)
	}
	if !res.NotModified {
		// One result per fetch: "ok" only for a body that parsed.
		f.series.fetched("ok")
	}
	for _, w := range x.warnings {
		fs.log.Debug("feed warning", "source", name, "warning", w)
	}
	fs.mu.Lock()
	if !fs.current(f) {
		fs.mu.Unlock()
		return false, nil // a reload replaced or removed the source meanwhile
	}
	changed := f.digest != x.digest || !f.loaded || f.rematch
	f.rematch = false
	if changed {
		// New content: not the copy in force expanded again as time
		// moves on (fetched in full or not).
		fs.install(f, x, now, !res.NotModified && res.Hash != f.hash)
	} else {
		// The same occurrences: the copy in force expanded again, or a
		// body that changed only outside the window (a past meeting
		// edited, DTSTAMPs): the matches and the spans built from them
		// stay as they are.
		fs.reexpanded(f, x, now)
	}
	if !res.NotModified {
		f.validators = state.Validators{ETag: res.Validators.ETag, LastModified: res.Validators.LastModified}
		f.hash = res.Hash
		f.refused, f.refusedErr = [32]byte{}, nil
	}
	c := state.Feed{Source: name, URLHash: state.URLHash(f.src.URL), Validators: f.validators, Hash: f.hash, Body: body, FetchedAt: now}
	fs.mu.Unlock()
	if fs.cache != nil {
		// With the copy, its occurrences: a restart reconciles from them
		// before it parses any copy (loadCache).
		c.Expansion = state.Expansion{Key: fs.expansionKey(f), At: now, Occurrences: ical.AppendOccurrences(nil, x.occs)}
	}
	fs.healthy(f, now)
	// A new copy is stored; so is a re-expanded one, with the time it was
	// confirmed, so that after a restart its age is known to within
	// expandEvery.
	if fs.cache != nil {
		if keep != nil {
			keep(c)
		} else {
			fs.storeFeed(ctx, c)
		}
	}
	if changed {
		fs.log.Info("feed read", "source", name, "events", x.events, "occurrences", len(x.occs), "warnings", len(x.warnings))
	}
	return changed, nil
}

// storedBody returns the body of f's copy in the feed cache when its hash
// is hash, else nil.
func (fs *feedSet) storedBody(ctx context.Context, f *feed, hash [32]byte) []byte {
	if fs.cache == nil {
		return nil
	}
	c, ok, err := fs.cache.Feed(ctx, f.src.Name)
	if err != nil {
		fs.log.Warn("read last good copy", "source", f.src.Name, "err", err)
		return nil
	}
	if !ok || c.Hash != hash || c.URLHash != state.URLHash(f.src.URL) {
		return nil
	}
	return c.Body
}

// expansion is a feed's body expanded and matched.
type expansion struct {
	occs     []ical.Occurrence // as compact gives them: the expansion stored with the copy
	digest   occDigest         // of occs
	matches  []plan.Match
	events   int
	warnings []string
	dropped  []string // ical.Result.Dropped
}

// expand parses body and expands it over [now-1h, now+horizon], for a copy
// last confirmed at confirmed, and matches the occurrences. A feed over a
// cap is refused with an error wrapping ical.ErrOverLimit.
//
// Past max_copy_age the copy's future events stop counting: an occurrence
// that starts later than confirmed + max_copy_age is dropped (a meeting
// that started before then runs on to its end). A copy confirmed by every
// poll is expanded again long before that matters (expandEvery is at most
// half of max_copy_age); one that keeps failing loses its events one by
// one as they come due, and the source is reported stale.
func (fs *feedSet) expand(f *feed, body []byte, now, confirmed time.Time) (*expansion, error) {
	cfg, matcher := fs.rules()
	sc := cfg.Schedule
	res, err := ical.ParseExpand(body, ical.ExpandOptions{
		From: now.Add(-time.Hour), To: now.Add(sc.Horizon),
		Zone: f.zone, MaxPerEvent: sc.MaxOccurrences,
		MaxEvents: sc.MaxFeedEvents, MaxOccurrences: sc.MaxFeedOccurrences,
	})
	if err != nil {
		return nil, err
	}
	occs := res.Occurrences // sorted by start
	cutoff := confirmed.Add(maxCopyAge(cfg))
	if i, _ := slices.BinarySearchFunc(occs, cutoff, func(o ical.Occurrence, t time.Time) int {
		if o.Start.After(t) {
			return 1
		}
		return -1
	}); i < len(occs) {
		occs = occs[:i]
	}
	// Descriptions (Zoom's and Webex's dial-in text, a kilobyte an event)
	// would be the bulk of what 10,000 feeds' occurrences hold, and only a
	// description filter reads them; without one, a changed description
	// changes nobody's presence either.
	x, err := matchOccurrences(cfg, matcher, f.src.Name, compact(occs, matcher.UsesDescription(f.src.Name)))
	if err != nil {
		return nil, err
	}
	x.events, x.warnings, x.dropped = res.Events, res.Warnings, res.Dropped
	return x, nil
}

// matchOccurrences matches source's compacted occurrences; more people
// than schedule.max_feed_people is an error wrapping ical.ErrOverLimit.
func matchOccurrences(cfg *config.Config, matcher *plan.Matcher, source string, occs []ical.Occurrence) (*expansion, error) {
	matches := matcher.Match(source, occs)
	if maxPeople := cfg.Schedule.MaxFeedPeople; maxPeople > 0 {
		people := make(map[string]struct{})
		for i := range matches {
			people[matches[i].User] = struct{}{}
		}
		if len(people) > maxPeople {
			return nil, fmt.Errorf("%d people matched, more than the %d allowed: %w", len(people), maxPeople, ical.ErrOverLimit)
		}
	}
	return &expansion{occs: occs, digest: digestOccurrences(occs), matches: matches}, nil
}

// install replaces the occurrences of f; fresh says they come from new
// content (see installed). fs.mu must be held.
func (fs *feedSet) install(f *feed, x *expansion, now time.Time, fresh bool) {
	f.occs, f.digest, f.matches = len(x.occs), x.digest, x.matches
	f.expandedAt = now
	if !f.loaded {
		fs.healthGen++
	}
	f.loaded = true
	f.warnings = len(x.warnings)
	f.dropped = reportDropped(fs.log, f.series, f.src.Name, f.dropped, x.dropped)
	fs.snap.valid = false
	f.series.set(gaugeOccurrences, float64(f.occs))
	if fs.installed != nil {
		fs.installed(f.matches, fresh)
	}
}

// reexpanded notes that f's copy was expanded again at now into the
// occurrences already in force (x's equal f's): the matches, and the
// snapshot the engine builds spans from, stay as they are. fs.mu must be
// held.
func (fs *feedSet) reexpanded(f *feed, x *expansion, now time.Time) {
	f.expandedAt = now
	f.warnings = len(x.warnings)
	f.dropped = reportDropped(fs.log, f.series, f.src.Name, f.dropped, x.dropped)
}

// failed records a failed read of f: the fetch, or the body (result says
// which), and returns the poll's result. The last good copy stays in
// force; when last is its body (it was due to be expanded again), it is
// expanded for the time now, so that its events keep coming due and, past
// max_copy_age, stop counting.
//
// The first failure is logged at Warn, and so is the source going stale;
// while it keeps failing, one Warn every failWarnEvery, Debug in between.
func (fs *feedSet) failed(f *feed, result string, err error, last []byte, now time.Time) (bool, error) {
	name := f.src.Name
	f.series.fetched(result)
	f.series.set(gaugeHealthy, 0)
	fs.mu.Lock()
	confirmed := f.lastOK
	fs.mu.Unlock()
	var x *expansion
	if last != nil {
		var xerr error
		if x, xerr = fs.expand(f, last, now, confirmed); xerr != nil {
			fs.log.Warn("last good copy refused", "source", name, "err", xerr)
			x = nil
		}
	}
	fs.mu.Lock()
	changed := false
	if x != nil && fs.current(f) {
		changed = f.digest != x.digest || f.rematch
		f.rematch = false
		if changed {
			fs.install(f, x, now, false)
		} else {
			fs.reexpanded(f, x, now)
		}
	}
	first := f.healthy || f.lastErr == ""
	if first {
		f.failingSince = now
	}
	f.healthy, f.lastErr = false, err.Error()
	fs.healthGen++
	stale := fs.stale(f, now)
	becameStale := stale && !f.staleNoted
	f.staleNoted = stale
	warn := first || becameStale || now.Sub(f.lastWarn) >= failWarnEvery
	if warn {
		f.lastWarn = now
	}
	loaded, since := f.loaded, f.failingSince
	fs.mu.Unlock()
	if stale {
		f.series.set(gaugeStale, 1)
	}
	args := []any{"source", name, "err", err}
	if loaded {
		args = append(args, "copy_age", now.Sub(confirmed).Round(time.Second), "stale", stale)
	}
	switch {
	case becameStale:
		fs.log.Warn("feed still unreadable and its last good copy is stale: its events after max_copy_age no longer count",
			append(args, "failing_since", since)...)
	case first:
		fs.log.Warn("feed unreadable; keeping the last good copy", args...)
	case warn:
		fs.log.Warn("feed still unreadable", append(args, "failing_since", since)...)
	default:
		fs.log.Debug("feed still unreadable", args...)
	}
	return changed, &SourceError{name, err}
}

// healthy records a good read of f at now.
func (fs *feedSet) healthy(f *feed, now time.Time) {
	fs.mu.Lock()
	was := f.healthy || f.lastErr == ""
	if !was {
		fs.healthGen++
	}
	f.healthy, f.lastErr, f.lastOK = true, "", now
	f.staleNoted = false
	fs.mu.Unlock()
	if !was {
		fs.log.Info("feed readable again", "source", f.src.Name)
	}
	f.series.set(gaugeHealthy, 1)
	f.series.set(gaugeLastSuccess, float64(now.Unix()))
	f.series.set(gaugeStale, 0)
}

// allMatches gathers the matches of every source into one slice, and
// makes each feed's matches a view of its part of it (capacity capped:
// nothing appends into a neighbour's), so that the matches are held once,
// not once in the feeds and again in the snapshot (at 100,000 feeds,
// 250 MB). The feeds' own arrays go. fs.mu must be held.
func (fs *feedSet) allMatches() []plan.Match {
	n := 0
	for _, f := range fs.feeds {
		n += len(f.matches)
	}
	matches := make([]plan.Match, 0, n)
	for _, name := range sortedKeys(fs.feeds) {
		f := fs.feeds[name]
		if len(f.matches) == 0 {
			continue
		}
		i := len(matches)
		matches = append(matches, f.matches...)
		f.matches = matches[i:len(matches):len(matches)]
	}
	return matches
}

// knownFunc reports, per address, whether every source that could concern
// it has been read. fs.mu must be held.
func (fs *feedSet) knownFunc() func(string) bool {
	matchUnloaded := false
	unknownFixed := make(map[string]bool)
	for _, f := range fs.feeds {
		if f.loaded || f.added {
			continue
		}
		if f.src.Match != "" {
			matchUnloaded = true
		}
		for _, u := range f.src.Users {
			unknownFixed[mailaddr.Normalize(u)] = true
		}
	}
	// address is normalised (the directory's form); "" asks about the
	// match sources only, everySource about them all.
	return func(address string) bool {
		if address == everySource {
			return !matchUnloaded && len(unknownFixed) == 0
		}
		return !matchUnloaded && !unknownFixed[address]
	}
}
