package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/plan"
)

// PauseStore keeps people's pauses durably (every state.Store driver
// does): the self-service page writes them on any replica, the
// leader's engine reads them.
type PauseStore interface {
	Pauses(ctx context.Context) (map[string]state.Pause, error)
	PutPause(ctx context.Context, p state.Pause) error
	DeletePause(ctx context.Context, id string) error
}

// HoldPaused is the Held kind of a person who paused on their own page:
// the status page lists them, so that ops see why a meeting sets nothing.
const HoldPaused = "paused"

// pausedHeld lists the people paused at now, for Status.Held (Until zero:
// until they resume).
func (e *Engine) pausedHeld(now time.Time) []HeldPerson {
	byID, _ := e.pauses.snapshot()
	var out []HeldPerson
	for id, p := range byID {
		if p.Active(now) {
			out = append(out, HeldPerson{User: e.dir.UPN(id), UserID: id, Kind: HoldPaused, Reason: "paused on their own page", Until: p.Until})
		}
	}
	return out
}

// pauseKeep is how long an ended pause is remembered: the spans it cut
// keep the start it gave them while it is (no re-set of a running span
// when it is forgotten), and every span it could have cut is over by then.
const pauseKeep = 48 * time.Hour

// ErrNoPauses is returned by Pause and Resume when the store keeps no
// pauses.
var ErrNoPauses = errors.New("engine: the state store keeps no pauses")

// pauseSet is the engine's copy of the pauses: in memory, and in the store
// when it keeps them. gen counts the changes: the spans follow it.
type pauseSet struct {
	mu    sync.Mutex
	store PauseStore // nil: none kept
	byID  map[string]state.Pause
	gen   uint64
}

func newPauseSet(st Store, log *slog.Logger) *pauseSet {
	ps := &pauseSet{byID: make(map[string]state.Pause)}
	if s, ok := st.(PauseStore); ok {
		ps.store = s
		ps.refresh(context.Background(), time.Now(), log)
	}
	return ps
}

// refresh reads the pauses from the store again (another replica may have
// written one), and forgets those over for pauseKeep.
func (ps *pauseSet) refresh(ctx context.Context, now time.Time, log *slog.Logger) (changed bool) {
	if ps.store == nil {
		return false
	}
	// A pause or call recorded here while the store is read is newer
	// than what the read returns: this round then changes nothing.
	ps.mu.Lock()
	before := ps.gen
	ps.mu.Unlock()
	got, err := ps.store.Pauses(ctx)
	if err != nil {
		log.Warn("read pauses", "err", err)
		if got == nil {
			return false
		}
	}
	for id, p := range got {
		if !p.Until.IsZero() && now.Sub(p.Until) > pauseKeep {
			if err := ps.store.DeletePause(ctx, id); err != nil {
				log.Warn("forget an ended pause", "err", err)
			}
			delete(got, id)
		}
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.gen == before && !maps.EqualFunc(got, ps.byID, func(a, b state.Pause) bool { return a.Since.Equal(b.Since) && a.Until.Equal(b.Until) }) {
		ps.byID = got
		ps.gen++
		return true
	}
	return false
}

func (ps *pauseSet) snapshot() (map[string]state.Pause, uint64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.byID, ps.gen
}

// Pause pauses the person with object id id from now until until (zero:
// until they resume): it records the pause durably, then clears them at
// once and sets nothing for them while it lasts — calendar spans and live
// signals alike. A later Pause replaces it.
func (e *Engine) Pause(ctx context.Context, id string, until time.Time) error {
	ps := e.pauses
	if ps.store == nil {
		return ErrNoPauses
	}
	p := state.Pause{ID: id, Since: time.Now(), Until: until}
	if err := ps.store.PutPause(ctx, p); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	ps.mu.Lock()
	next := maps.Clone(ps.byID)
	next[id] = p
	ps.byID = next
	ps.gen++
	ps.mu.Unlock()
	e.log.Info("paused", "user", e.dir.UPN(id), "until", until)
	e.kickReconcile()
	return nil
}

// Resume ends the pause of the person id: their spans count again from
// the next reconcile, which it asks for. Resuming nobody paused is no
// error.
func (e *Engine) Resume(ctx context.Context, id string) error {
	ps := e.pauses
	if ps.store == nil {
		return ErrNoPauses
	}
	if err := ps.store.DeletePause(ctx, id); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	ps.mu.Lock()
	_, was := ps.byID[id]
	if was {
		next := maps.Clone(ps.byID)
		delete(next, id)
		ps.byID = next
		ps.gen++
	}
	ps.mu.Unlock()
	if was {
		e.log.Info("resumed", "user", e.dir.UPN(id))
		e.kickReconcile()
	}
	return nil
}

// Paused returns the pause of the person id in force at now.
func (e *Engine) Paused(id string, now time.Time) (state.Pause, bool) {
	byID, _ := e.pauses.snapshot()
	p, ok := byID[id]
	return p, ok && p.Active(now)
}

// cutPaused returns spans with what the pauses take away: a person paused
// until resumed has no span; one paused until T keeps only what runs after
// T (a meeting in progress then is set at T). It copies only what it
// changes: spans is the view's cache.
func cutPaused(spans map[string][]plan.Span, pauses map[string]state.Pause) map[string][]plan.Span {
	if len(pauses) == 0 {
		return spans
	}
	out := maps.Clone(spans)
	for id, p := range pauses {
		ss, ok := out[id]
		if !ok {
			continue
		}
		if p.Until.IsZero() {
			delete(out, id)
			continue
		}
		var kept []plan.Span
		for _, s := range ss {
			if !s.End.After(p.Until) {
				continue
			}
			if s.Start.Before(p.Until) {
				s.Start = p.Until
			}
			kept = append(kept, s)
		}
		if len(kept) == 0 {
			delete(out, id)
		} else {
			out[id] = kept
		}
	}
	return out
}
