package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/state"
)

// OwnFeedStore keeps the feeds people add on their page (every
// state.Store driver does), for every replica.
type OwnFeedStore interface {
	OwnFeeds(ctx context.Context) (map[string]state.OwnFeed, error)
}

// OwnFeedPrefix begins the name of the source a person's own feed
// becomes: "own:" and the feed's id. A configured source's name has no
// colon (config.Validate), so none can take it.
const OwnFeedPrefix = "own:"

// OwnFeedSource is the name of the source own feed id becomes.
func OwnFeedSource(id string) string { return OwnFeedPrefix + id }

// ownFeedID is the feed id of an own feed's source name, and whether name
// is one.
func ownFeedID(name string) (string, bool) { return strings.CutPrefix(name, OwnFeedPrefix) }

// ownFeedSet is the engine's copy of people's own feeds
// (selfservice.feeds): read from the store at start and every InboxEvery,
// each opened (its URL unsealed) and made a source whose users: is its
// person alone. A change reloads the sources (applyReload), so that an own
// feed is polled, stored, restarted from and removed like any source.
type ownFeedSet struct {
	store OwnFeedStore
	open  func(state.OwnFeed) (string, error)

	mu     sync.Mutex
	byID   map[string]state.OwnFeed // the feeds in force
	urls   map[string]string        // feed id → its URL, opened
	broken map[string]bool          // ids that do not open, warned about once
}

// newOwnFeedSet returns the set of own feeds, read from st once; nil when
// open is nil (selfservice.feeds off) or st keeps none.
func newOwnFeedSet(ctx context.Context, st Store, open func(state.OwnFeed) (string, error), log *slog.Logger) *ownFeedSet {
	s, ok := st.(OwnFeedStore)
	if open == nil || !ok {
		return nil
	}
	ofs := &ownFeedSet{store: s, open: open, byID: map[string]state.OwnFeed{}, urls: map[string]string{}, broken: map[string]bool{}}
	ofs.refresh(ctx, log)
	return ofs
}

// refresh reads the own feeds from the store again and reports whether
// the set in force changed. A feed whose URL does not open (a replaced
// cookie key) is left out, with a warning that names it, not its URL.
func (ofs *ownFeedSet) refresh(ctx context.Context, log *slog.Logger) (changed bool) {
	if ofs == nil {
		return false
	}
	got, err := ofs.store.OwnFeeds(ctx)
	if err != nil {
		log.Warn("read people's own feeds", "err", err)
		if got == nil {
			return false
		}
	}
	ofs.mu.Lock()
	defer ofs.mu.Unlock()
	byID := make(map[string]state.OwnFeed, len(got))
	urls := make(map[string]string, len(got))
	for id, f := range got {
		if old, ok := ofs.byID[id]; ok && slices.Equal(old.Sealed, f.Sealed) && old.Address == f.Address && old.Person == f.Person {
			byID[id], urls[id] = f, ofs.urls[id]
			continue
		}
		u, err := ofs.open(f)
		if err != nil {
			if !ofs.broken[id] {
				ofs.broken[id] = true
				log.Warn("own feed left out", "feed", OwnFeedSource(id), "person", f.Person, "err", err)
			}
			continue
		}
		delete(ofs.broken, id)
		byID[id], urls[id] = f, u
	}
	if maps.EqualFunc(byID, ofs.byID, func(a, b state.OwnFeed) bool { return slices.Equal(a.Sealed, b.Sealed) && a.Address == b.Address }) {
		return false
	}
	ofs.byID, ofs.urls = byID, urls
	return true
}

// merge returns base with a source for each own feed in force after its
// own sources, sorted by name; base itself when there are none.
func (ofs *ownFeedSet) merge(base *config.Config) *config.Config {
	if ofs == nil {
		return base
	}
	ofs.mu.Lock()
	defer ofs.mu.Unlock()
	if len(ofs.byID) == 0 {
		return base
	}
	cfg := *base
	cfg.Sources = slices.Clip(slices.Clone(base.Sources))
	for _, id := range sortedKeys(ofs.byID) {
		cfg.Sources = append(cfg.Sources, ownSource(base, ofs.byID[id], ofs.urls[id]))
	}
	return &cfg
}

// ownSource is the source own feed f at rawURL becomes under base: named
// OwnFeedSource(f.ID), for f's person alone, on public addresses only
// unless selfservice.private_feeds, with the top level's settings.
func ownSource(base *config.Config, f state.OwnFeed, rawURL string) config.Source {
	return config.Source{
		Name:       OwnFeedSource(f.ID),
		URL:        rawURL,
		Users:      []string{f.Address},
		Owner:      f.Person,
		PublicOnly: !base.Selfservice.PrivateFeeds,
	}
}

// CheckOwnFeed reads a feed a person offers (f, at rawURL) once, as it
// would be polled, and returns the meetings it makes them busy for in the
// horizon from now: what the page reports before the feed is accepted. An
// error is the feed's, worded for the person (it names the URL redacted).
func CheckOwnFeed(ctx context.Context, base *config.Config, fetcher Fetcher, f state.OwnFeed, rawURL string, now time.Time) (int, error) {
	cfg := *base
	cfg.Sources = []config.Source{ownSource(base, f, rawURL)}
	matches, err := Plan(ctx, &cfg, fetcher, PlanRequest{From: now, To: now.Add(base.Schedule.Horizon)})
	if se, ok := errors.AsType[*SourceError](err); ok {
		return 0, se.Err
	}
	return len(matches), err
}

// owners returns the person (object id) and address of each own feed in
// force, by feed id.
func (ofs *ownFeedSet) owners() map[string]state.OwnFeed {
	if ofs == nil {
		return nil
	}
	ofs.mu.Lock()
	defer ofs.mu.Unlock()
	out := make(map[string]state.OwnFeed, len(ofs.byID))
	for id, f := range ofs.byID {
		out[id] = state.OwnFeed{ID: id, Person: f.Person, Address: f.Address}
	}
	return out
}

// RefreshOwnFeeds reads people's own feeds from the store now, instead of
// at the next InboxEvery (the self-service page, after a person added or
// removed one on this replica), and has a change put in force: by Run's
// loop at once, or here when Run is not running (the one-off commands).
func (e *Engine) RefreshOwnFeeds(ctx context.Context) error {
	if e.own == nil || !e.own.refresh(ctx, e.log) {
		return nil
	}
	e.mu.Lock()
	running := e.running
	e.mu.Unlock()
	if running {
		e.kickOwnFeeds()
		return nil
	}
	if _, _, err := e.applyReload(ctx, e.conf.Load().base, "own feeds changed"); err != nil {
		return fmt.Errorf("own feeds: %w", err)
	}
	e.countOwnFeeds()
	return nil
}

// kickOwnFeeds asks Run's loop to put the own feeds in force; a request
// already waiting covers this one.
func (e *Engine) kickOwnFeeds() {
	select {
	case e.ownKick <- struct{}{}:
	default:
	}
}

// countOwnFeeds sets calpresence_own_feeds from the own feeds in force.
func (e *Engine) countOwnFeeds() {
	if e.own == nil {
		return
	}
	e.metrics.OwnFeeds.Reset()
	for _, c := range e.ownFeedCounts() {
		e.metrics.OwnFeeds.WithLabelValues(c.User).Set(float64(c.Feeds))
	}
}

// ownFeedCounts counts the own feeds in force by person, failing ones
// apart, sorted by UPN.
func (e *Engine) ownFeedCounts() []OwnFeedCount {
	owners := e.own.owners()
	if len(owners) == 0 {
		return nil
	}
	st := e.feeds.ownStatuses()
	by := make(map[string]*OwnFeedCount)
	for id, f := range owners {
		c := by[f.Person]
		if c == nil {
			c = &OwnFeedCount{User: cmp.Or(e.dir.UPN(f.Person), f.Address), UserID: f.Person}
			by[f.Person] = c
		}
		c.Feeds++
		if s, ok := st[OwnFeedSource(id)]; ok && !s.Healthy && s.LastError != "" {
			c.Failing++
		}
	}
	out := make([]OwnFeedCount, 0, len(by))
	for _, c := range by {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b OwnFeedCount) int { return strings.Compare(a.User, b.User) })
	return out
}

// ownFeedsOf returns the status of the person's own feeds in force, by
// source name (the page shows each, redacted).
func (e *Engine) ownFeedsOf(person string) []SourceStatus {
	owners := e.own.owners()
	if len(owners) == 0 {
		return nil
	}
	st := e.feeds.ownStatuses()
	var out []SourceStatus
	for id, f := range owners {
		if s, ok := st[OwnFeedSource(id)]; ok && f.Person == person {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b SourceStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// OwnFeedCount is how many own feeds a person has in force, for the
// status page (never their URLs).
type OwnFeedCount struct {
	User   string `json:"user"` // UPN
	UserID string `json:"user_id"`
	Feeds  int    `json:"feeds"`
	// Failing are those whose last read failed.
	Failing int `json:"failing"`
}
