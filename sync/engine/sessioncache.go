package engine

import (
	"context"
	"errors"
	"maps"
	"sync"

	"github.com/calpresence/calpresence/state"
)

// sessionCache keeps the engine's copy of the recorded sessions in memory,
// writing every change through to the Store first. Every reconcile reads
// all the sessions: decoding 10,000 records from the state file (or a
// database) each time cost more than the reconcile itself (BENCHMARKS.md).
// The engine is the only writer while it runs (the state file is locked;
// with several replicas only the leader runs an engine), so its copy stays
// true.
//
// A write that fails leaves the record in doubt: the copy is dropped and
// read again from the Store the next time. Writes of one key are kept in
// order (the copy must end as the Store ends) by a lock per key stripe;
// writes of different people still go to the Store side by side.
type sessionCache struct {
	Store // identities pass through

	stripes [64]sync.Mutex

	mu       sync.Mutex
	sessions map[string]state.Session // nil: read the Store next time
}

func newSessionCache(s Store) *sessionCache { return &sessionCache{Store: s} }

// Sessions returns a copy of the sessions. The first read (and the first
// after a failed write) reads the Store and returns its
// *state.BadRecordsError, if any, once; the damaged records are then
// absent until a write replaces them.
func (c *sessionCache) Sessions(ctx context.Context) (map[string]state.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions != nil {
		return maps.Clone(c.sessions), nil
	}
	s, err := c.Store.Sessions(ctx)
	if err != nil && !errors.As(err, new(*state.BadRecordsError)) {
		return nil, err
	}
	c.sessions = s
	return maps.Clone(s), err
}

func (c *sessionCache) PutSession(ctx context.Context, s state.Session) error {
	return c.write([]string{s.Key()}, func() error { return c.Store.PutSession(ctx, s) },
		func(m map[string]state.Session) { m[s.Key()] = s })
}

func (c *sessionCache) PutSessions(ctx context.Context, ss []state.Session) error {
	keys := make([]string, len(ss))
	for i, s := range ss {
		keys[i] = s.Key()
	}
	return c.write(keys, func() error { return c.Store.PutSessions(ctx, ss) }, func(m map[string]state.Session) {
		for _, s := range ss {
			m[s.Key()] = s
		}
	})
}

func (c *sessionCache) DeleteSession(ctx context.Context, key string) error {
	return c.write([]string{key}, func() error { return c.Store.DeleteSession(ctx, key) },
		func(m map[string]state.Session) { delete(m, key) })
}

// write runs the Store's write of keys with their stripes locked, then
// applies it to the copy, or drops the copy if the Store failed.
func (c *sessionCache) write(keys []string, store func() error, apply func(map[string]state.Session)) error {
	var locked [len(c.stripes)]bool
	for _, k := range keys {
		locked[stripe(k)] = true
	}
	for i := range locked { // in order: two batches never deadlock
		if locked[i] {
			c.stripes[i].Lock()
			defer c.stripes[i].Unlock()
		}
	}
	err := store()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.sessions = nil
	} else if c.sessions != nil {
		apply(c.sessions)
	}
	return err
}

func stripe(key string) int {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return int(h % 64)
}
