// Package mem is the state.Store a dry run keeps in memory: it must
// neither need nor touch the state file, and leaves nothing a real run
// would pick up. Tests use it too. It keeps the contract of the other
// drivers (state/storetest), durability aside: what it holds goes with the
// process.
package mem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/state"
)

// Store is a state.Store in memory. Its methods are safe for concurrent
// use; what they return is a copy, and what they are given is copied.
type Store struct {
	mu       sync.Mutex
	sessions map[string]state.Session
	ids      map[string]state.Identity
	feeds    map[string]state.Feed
	pauses   map[string]state.Pause
	ownCalls map[string]state.OwnCall
	ownFeeds map[string]state.OwnFeed
	signals  map[string]state.Signal
}

var _ state.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store {
	return &Store{
		sessions: make(map[string]state.Session),
		ids:      make(map[string]state.Identity),
		feeds:    make(map[string]state.Feed),
		pauses:   make(map[string]state.Pause),
		ownCalls: make(map[string]state.OwnCall),
		ownFeeds: make(map[string]state.OwnFeed),
		signals:  make(map[string]state.Signal),
	}
}

// Close does nothing: the records stay with the Store (a contract test
// reopens it so).
func (m *Store) Close() error { return nil }

// Ping reports that the Store can be used: it always can.
func (m *Store) Ping(ctx context.Context) error { return nil }

// Sessions returns a copy of the sessions, by Key.
func (m *Store) Sessions(ctx context.Context) (map[string]state.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]state.Session, len(m.sessions))
	for k, v := range m.sessions {
		out[k] = cloneSession(v)
	}
	return out, nil
}

// PutSession records s under s.Key().
func (m *Store) PutSession(ctx context.Context, s state.Session) error {
	return m.PutSessions(ctx, []state.Session{s})
}

// PutSessions records many sessions: all, or none when one has no key.
func (m *Store) PutSessions(ctx context.Context, ss []state.Session) error {
	for _, s := range ss {
		if s.Key() == "" {
			return errors.New("state: put session: no user id")
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range ss {
		m.sessions[s.Key()] = cloneSession(s)
	}
	return nil
}

func cloneSession(s state.Session) state.Session {
	s.Events = slices.Clone(s.Events)
	return s
}

// DeleteSession forgets the session stored under key.
func (m *Store) DeleteSession(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, key)
	return nil
}

// Identities returns a copy of the identities, by normalised address.
func (m *Store) Identities(ctx context.Context) (map[string]state.Identity, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.ids), nil
}

// PutIdentities records ids under their normalised addresses: all, or
// none when one has no address.
func (m *Store) PutIdentities(ctx context.Context, ids []state.Identity) error {
	for _, id := range ids {
		if mailaddr.Normalize(id.Address) == "" {
			return errors.New("state: put identity: empty address")
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		id.Address = mailaddr.Normalize(id.Address)
		m.ids[id.Address] = id
	}
	return nil
}

// DeleteIdentity forgets address.
func (m *Store) DeleteIdentity(ctx context.Context, address string) error {
	return m.DeleteIdentities(ctx, []string{address})
}

// DeleteIdentities forgets addresses.
func (m *Store) DeleteIdentities(ctx context.Context, addresses []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range addresses {
		delete(m.ids, mailaddr.Normalize(a))
	}
	return nil
}

// Feed returns a copy of source's feed.
func (m *Store) Feed(ctx context.Context, source string) (state.Feed, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.feeds[source]
	f.Body = bytes.Clone(f.Body)
	f.Expansion.Occurrences = bytes.Clone(f.Expansion.Occurrences)
	return f, ok, nil
}

// FeedHeads returns a copy of every feed without its body, with its
// expansion.
func (m *Store) FeedHeads(ctx context.Context) ([]state.Feed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	heads := make([]state.Feed, 0, len(m.feeds))
	for _, f := range m.feeds {
		f.Body = nil
		f.Expansion.Occurrences = bytes.Clone(f.Expansion.Occurrences)
		heads = append(heads, f)
	}
	return heads, nil
}

// PutFeed stores f as its source's copy; a zero Hash is computed from
// Body.
func (m *Store) PutFeed(ctx context.Context, f state.Feed) error {
	return m.PutFeeds(ctx, []state.Feed{f})
}

// PutFeeds stores several copies: all, or none when one has no source.
func (m *Store) PutFeeds(ctx context.Context, feeds []state.Feed) error {
	for _, f := range feeds {
		if f.Source == "" {
			return errors.New("state: put feed: empty source")
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range feeds {
		if f.Hash == ([32]byte{}) {
			f.Hash = sha256.Sum256(f.Body)
		}
		f.Body = bytes.Clone(f.Body)
		f.Expansion.Occurrences = bytes.Clone(f.Expansion.Occurrences)
		m.feeds[f.Source] = f
	}
	return nil
}

// DeleteFeedsExcept drops the copies of every source not in sources.
func (m *Store) DeleteFeedsExcept(ctx context.Context, sources []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	maps.DeleteFunc(m.feeds, func(src string, _ state.Feed) bool { return !slices.Contains(sources, src) })
	return nil
}

// Signals returns a copy of the signals, by ID.
func (m *Store) Signals(ctx context.Context) (map[string]state.Signal, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.signals), nil
}

// QueuedSignals returns a copy of the signals in the inbox.
func (m *Store) QueuedSignals(ctx context.Context) (map[string]state.Signal, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]state.Signal)
	for id, s := range m.signals {
		if state.Queued(id) {
			out[id] = s
		}
	}
	return out, nil
}

// Signal returns the signal stored under id.
func (m *Store) Signal(ctx context.Context, id string) (state.Signal, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.signals[id]
	return s, ok, nil
}

// PutSignal records s under s.ID.
func (m *Store) PutSignal(ctx context.Context, s state.Signal) error {
	if s.ID == "" {
		return errors.New("state: put signal: no id")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.signals[s.ID] = s
	return nil
}

// DeleteSignal forgets the signal stored under id.
func (m *Store) DeleteSignal(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.signals, id)
	return nil
}

// Pauses returns a copy of the pauses (PauseStore).
func (m *Store) Pauses(ctx context.Context) (map[string]state.Pause, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.pauses), nil
}

// PutPause records p (PauseStore).
func (m *Store) PutPause(ctx context.Context, p state.Pause) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.ID == "" {
		return errors.New("put pause: empty id")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pauses == nil {
		m.pauses = make(map[string]state.Pause)
	}
	m.pauses[p.ID] = p
	return nil
}

// DeletePause forgets the pause of id (PauseStore).
func (m *Store) DeletePause(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pauses, id)
	return nil
}

// OwnCalls returns a copy of the own calls (OwnCallStore).
func (m *Store) OwnCalls(ctx context.Context) (map[string]state.OwnCall, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.ownCalls), nil
}

// PutOwnCall records c (OwnCallStore).
func (m *Store) PutOwnCall(ctx context.Context, c state.OwnCall) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.ID == "" {
		return errors.New("put own call: empty id")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ownCalls == nil {
		m.ownCalls = make(map[string]state.OwnCall)
	}
	m.ownCalls[c.ID] = c
	return nil
}

// DeleteOwnCall forgets the call of id (OwnCallStore).
func (m *Store) DeleteOwnCall(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ownCalls, id)
	return nil
}

// OwnFeeds returns a copy of the own feeds.
func (m *Store) OwnFeeds(ctx context.Context) (map[string]state.OwnFeed, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]state.OwnFeed, len(m.ownFeeds))
	for id, f := range m.ownFeeds {
		f.Sealed = slices.Clone(f.Sealed)
		out[id] = f
	}
	return out, nil
}

// PutOwnFeed records a copy of f.
func (m *Store) PutOwnFeed(ctx context.Context, f state.OwnFeed) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.ID == "" {
		return errors.New("put own feed: empty id")
	}
	f.Sealed = slices.Clone(f.Sealed)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ownFeeds == nil {
		m.ownFeeds = make(map[string]state.OwnFeed)
	}
	m.ownFeeds[f.ID] = f
	return nil
}

// DeleteOwnFeed forgets the feed id.
func (m *Store) DeleteOwnFeed(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ownFeeds, id)
	return nil
}
