package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/plan"
)

// OwnCallStore keeps the calls people declare on their page ("I'm on a
// call") durably (every state.Store driver does), for every
// replica.
type OwnCallStore interface {
	OwnCalls(ctx context.Context) (map[string]state.OwnCall, error)
	PutOwnCall(ctx context.Context, c state.OwnCall) error
	DeleteOwnCall(ctx context.Context, id string) error
}

// OwnCallSource is the source of the matches an own call makes: a live
// signal of the person's own ("webhook:" like the vendors', so that the
// status page shows it as live).
const OwnCallSource = signalSourcePrefix + "self"

// ownCallKeep is how long an ended call is remembered before it is
// forgotten (its span is over; nothing depends on it).
const ownCallKeep = time.Hour

// ErrNoOwnCalls is returned by StartCall and EndCall when the store keeps
// no calls.
var ErrNoOwnCalls = errors.New("engine: the state store keeps no own calls")

// ownCallSet is the engine's copy of the own calls, as pauseSet is of the
// pauses.
type ownCallSet struct {
	mu    sync.Mutex
	store OwnCallStore // nil: none kept
	byID  map[string]state.OwnCall
	gen   uint64
}

func newOwnCallSet(st Store, log *slog.Logger) *ownCallSet {
	cs := &ownCallSet{byID: make(map[string]state.OwnCall)}
	if s, ok := st.(OwnCallStore); ok {
		cs.store = s
		cs.refresh(context.Background(), time.Now(), log)
	}
	return cs
}

// refresh reads the calls from the store again (another replica may have
// written one), and forgets those over for ownCallKeep.
func (cs *ownCallSet) refresh(ctx context.Context, now time.Time, log *slog.Logger) (changed bool) {
	if cs.store == nil {
		return false
	}
	// A pause or call recorded here while the store is read is newer
	// than what the read returns: this round then changes nothing.
	cs.mu.Lock()
	before := cs.gen
	cs.mu.Unlock()
	got, err := cs.store.OwnCalls(ctx)
	if err != nil {
		log.Warn("read own calls", "err", err)
		if got == nil {
			return false
		}
	}
	for id, c := range got {
		if now.Sub(c.Until) > ownCallKeep {
			if err := cs.store.DeleteOwnCall(ctx, id); err != nil {
				log.Warn("forget an ended own call", "err", err)
			}
			delete(got, id)
		}
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.gen == before && !maps.EqualFunc(got, cs.byID, func(a, b state.OwnCall) bool { return a.Since.Equal(b.Since) && a.Until.Equal(b.Until) }) {
		cs.byID = got
		cs.gen++
		return true
	}
	return false
}

func (cs *ownCallSet) snapshot() (map[string]state.OwnCall, uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.byID, cs.gen
}

func (cs *ownCallSet) set(id string, c *state.OwnCall) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	next := maps.Clone(cs.byID)
	if c == nil {
		delete(next, id)
	} else {
		next[id] = *c
	}
	cs.byID = next
	cs.gen++
}

// StartCall makes the person with object id id Busy/InACall from now
// until until, recorded durably, and asks for a reconcile at once. A call
// already running is replaced.
func (e *Engine) StartCall(ctx context.Context, id string, until time.Time) error {
	cs := e.calls
	if cs.store == nil {
		return ErrNoOwnCalls
	}
	c := state.OwnCall{ID: id, Since: time.Now(), Until: until}
	if err := cs.store.PutOwnCall(ctx, c); err != nil {
		return fmt.Errorf("start call: %w", err)
	}
	cs.set(id, &c)
	e.log.Info("own call", "user", e.dir.UPN(id), "until", until)
	e.kickReconcile()
	return nil
}

// EndCall ends the person's own call now; ending none is no error.
func (e *Engine) EndCall(ctx context.Context, id string) error {
	cs := e.calls
	if cs.store == nil {
		return ErrNoOwnCalls
	}
	if err := cs.store.DeleteOwnCall(ctx, id); err != nil {
		return fmt.Errorf("end call: %w", err)
	}
	if byID, _ := cs.snapshot(); !hasKey(byID, id) {
		return nil
	}
	cs.set(id, nil)
	e.log.Info("own call ended", "user", e.dir.UPN(id))
	e.kickReconcile()
	return nil
}

func hasKey[V any](m map[string]V, k string) bool { _, ok := m[k]; return ok }

// OwnCall returns the person's own call in force at now.
func (e *Engine) OwnCall(id string, now time.Time) (state.OwnCall, bool) {
	byID, _ := e.calls.snapshot()
	c, ok := byID[id]
	return c, ok && !now.Before(c.Since) && now.Before(c.Until)
}

// withOwnCalls adds a match for each own call, Busy/InACall over its
// time, named by one of the person's addresses (the key function maps it
// back to them); a person the directory no longer knows is left out. It
// never writes into matches' array (the feeds' snapshot).
func (e *Engine) withOwnCalls(matches []plan.Match, calls map[string]state.OwnCall) []plan.Match {
	if len(calls) == 0 {
		return matches
	}
	out := slices.Clip(matches)
	for _, id := range slices.Sorted(maps.Keys(calls)) {
		c := calls[id]
		as := e.dir.Addresses(id)
		if len(as) == 0 || !c.Until.After(c.Since) {
			continue
		}
		occ := &plan.Occurrence{UID: "own-call:" + id, RecurrenceID: c.Since.UTC(), Summary: "on a call (said on their page)",
			Start: c.Since, End: c.Until}
		out = append(out, plan.Match{User: as[0], Occ: occ, Rule: &plan.Rule{Source: OwnCallSource,
			Pair: presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInACall}}})
	}
	return out
}
