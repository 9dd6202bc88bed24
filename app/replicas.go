package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/leader"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/pg"
	"github.com/calpresence/calpresence/sync/engine"
)

// Several replicas (state.driver postgres, docs/deploy.md):
// every replica serves the status page, the probes and the metrics; one,
// elected with a PostgreSQL advisory lock (package leader), runs the
// engine. A standby builds a new engine when it takes the lead: it starts
// from the sessions, intents and feed copies the old leader recorded in
// the database, as a restarted single replica starts from its file. The
// lead lost, the engine's context ends at once and every Graph call first
// asks whether this replica still leads (fencedPresence); calls in flight
// are cut short (leader.Lost), during a hand-back too. Each lead takes a new
// leader epoch in the database and writes in it (beginTerm): what an
// earlier leader still writes is refused, and a refusal of this one's
// writes ends its lead.

// replicated reports whether cfg shares its state with other replicas.
func replicated(cfg *config.Config, memory bool) bool {
	return cfg.State.Driver == config.DriverPostgres && !cfg.Graph.DryRun && !memory
}

// newElector returns the election for cfg's database; reg, when set,
// registers its metrics.
func (a *App) newElector(cfg *config.Config, withMetrics bool) (*leader.Elector, error) {
	o := a.electorOpts
	o.Logger, o.Registerer = a.log, nil
	if withMetrics {
		o.Registerer = a.reg
	}
	el, err := leader.New(string(cfg.State.DSN), o)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("state.dsn: %w", err)}
	}
	return el, nil
}

// runReplica takes part in the election until ctx ends, running the
// engine while this replica leads.
func (a *App) runReplica(ctx context.Context) error {
	a.setEngine(nil, "standby: another replica leads, or the election has not been won yet")
	return a.elector.Run(ctx, func(leadCtx context.Context) error {
		t, err := a.beginTerm(leadCtx)
		if err != nil {
			return err
		}
		defer t.end()
		a.pruneFeeds(leadCtx, a.Config(), t.feeds)
		eng, err := a.newEngine(leadCtx, a.elector, t)
		if err != nil {
			return err
		}
		a.setEngine(eng, "")
		a.log.Info("this replica leads: the engine starts", "replica", a.elector.ID(), "epoch", t.epoch)
		err = eng.Run(t.ctx)
		if cause := context.Cause(t.ctx); errors.Is(cause, state.ErrFenced) {
			err = cause // the elector steps down and pauses, as after its own fence
		}
		a.setEngine(nil, "standby: the lead was lost or handed over")
		a.metrics.ResetGauges()
		a.log.Info("the engine stopped: this replica stands by", "replica", a.elector.ID(), "err", err)
		return err
	})
}

// term is one lead of this replica, as its engine sees it (beginTerm).
type term struct {
	// ctx is the lead's context, ended too when the store refuses a write
	// of this term (the cause then wraps state.ErrFenced).
	ctx context.Context
	// lost ends when the lead is lost (leader.Lost) or the store refuses a
	// write of this term: calls in flight are then cut short.
	lost  context.Context
	store engine.Store
	feeds engine.FeedCache
	epoch int64 // the leader epoch its writes carry (0: none, not PostgreSQL)
	end   func()
}

// beginTerm starts a lead of this replica; leadCtx is the elector's for it.
// With the PostgreSQL store it first takes a new leader epoch
// (pg.Store.Lead), before the engine reads anything: from then on the
// database refuses what earlier leads still write, and the engine writes
// through the view that carries the new epoch. Once the database refuses
// a write of this lead in turn (a later lead has begun, whether or not the
// elector has noticed yet), the term ends as on the elector's fence: the
// engine stops acting, and calls in flight are cut short. end releases
// what beginTerm started; call it when the lead returns.
func (a *App) beginTerm(leadCtx context.Context) (*term, error) {
	ctx, endCtx := context.WithCancelCause(leadCtx)
	lost, endLost := context.WithCancelCause(leader.Lost(leadCtx))
	t := &term{ctx: ctx, lost: lost, store: a.store, feeds: a.feeds}
	t.end = func() { endCtx(nil); endLost(nil) }
	lead, ok := a.store.(*pg.Store)
	if !ok {
		return t, nil
	}
	view, err := lead.Lead(leadCtx)
	if err != nil {
		t.end()
		return nil, err
	}
	t.store, t.feeds, t.epoch = view, view, view.Epoch()
	done := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-view.Fenced():
			err := fmt.Errorf("the database refused a write of leader epoch %d, as a later lead has begun: %w", view.Epoch(), state.ErrFenced)
			endLost(err)
			endCtx(err)
		case <-done:
		}
	})
	t.end = func() {
		close(done)
		watch.Wait()
		endCtx(nil)
		endLost(nil)
	}
	return t, nil
}

func (a *App) setEngine(eng *engine.Engine, down string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.eng, a.down = eng, down
}

// replica says what this replica is, for /readyz and the status page;
// nil with one replica.
func (a *App) replica(ctx context.Context) *engine.Replica {
	if a.elector == nil {
		return nil
	}
	r := &engine.Replica{ID: a.elector.ID(), Role: a.elector.Role()}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	id, since, err := a.elector.Leader(ctx)
	if err != nil {
		r.Error = "cannot ask the database who leads: " + err.Error()
	}
	r.Leader, r.Since = id, since
	return r
}

// errNotLeader is what a Graph call gets once this replica no longer
// leads: it is never sent.
var errNotLeader = errors.New("this replica no longer leads: the call is not sent (fenced)")

// fencedPresence sends a presence change only while this replica leads:
// a leader cut off from the database stops changing presence at once,
// before another replica can take over (leader.Elector.Leading expires
// with its lease even when nothing else notices).
//
// A call already in flight when the lead is lost (lost ends) is cut short:
// the Graph client would otherwise send it again after a 429's or 503's
// Retry-After, seconds after another replica may have begun to act (a set
// arriving after its clear leaves the person busy for the whole lease). Cut
// short, the call stays recorded as uncertain, and the next leader settles
// it. A lead handed back (SIGTERM) lets calls in flight finish: the lock is
// held, and checked, until the engine has stopped; lost the lock meanwhile,
// they are cut short as well (leader.Lost).
type fencedPresence struct {
	engine.Presence
	leading func() bool
	lost    context.Context // nil: never
}

// guard returns ctx, cut short when the lead is lost.
func (f fencedPresence) guard(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if f.lost == nil {
		return ctx, cancel
	}
	stop := context.AfterFunc(f.lost, cancel)
	return ctx, func() { stop(); cancel() }
}

func (f fencedPresence) SetPresence(ctx context.Context, userID, availability, activity string, expiration time.Duration) error {
	if !f.leading() {
		return errNotLeader
	}
	ctx, cancel := f.guard(ctx)
	defer cancel()
	return f.Presence.SetPresence(ctx, userID, availability, activity, expiration)
}

func (f fencedPresence) ClearPresence(ctx context.Context, userID string) error {
	if !f.leading() {
		return errNotLeader
	}
	ctx, cancel := f.guard(ctx)
	defer cancel()
	return f.Presence.ClearPresence(ctx, userID)
}

func (f fencedPresence) SetStatusMessage(ctx context.Context, userID, message string, expires time.Time) error {
	if !f.leading() {
		return errNotLeader
	}
	ctx, cancel := f.guard(ctx)
	defer cancel()
	return f.Presence.SetStatusMessage(ctx, userID, message, expires)
}

func (f fencedPresence) ClearStatusMessage(ctx context.Context, userID string) error {
	if !f.leading() {
		return errNotLeader
	}
	ctx, cancel := f.guard(ctx)
	defer cancel()
	return f.Presence.ClearStatusMessage(ctx, userID)
}

// ResolveUser and ReadPresences change nothing in Graph: they are not
// fenced.
func (f fencedPresence) ResolveUser(ctx context.Context, address string) (presence.Person, error) {
	return f.Presence.ResolveUser(ctx, address)
}

// Exclusive runs fn with an engine no other writer runs beside: with one
// replica the state file's lock already sees to that (New took it); with
// several, fn runs while this process holds the lead, so the one-off
// commands (resync, clear without a daemon answering) never act beside a
// leader. When another replica leads, it says which instead: ask it.
func (a *App) Exclusive(ctx context.Context, fn func(ctx context.Context, eng *engine.Engine) error) error {
	cfg := a.Config()
	if !replicated(cfg, a.memory) {
		eng, err := a.NewEngine(ctx)
		if err != nil {
			return err
		}
		return fn(ctx, eng)
	}
	el, err := a.newElector(cfg, false)
	if err != nil {
		return err
	}
	defer el.Close()
	if id, _, err := el.Leader(ctx); err != nil {
		return fmt.Errorf("ask the database who leads: %w", err)
	} else if id != "" {
		return fmt.Errorf("replica %s leads: send the command to it (its server.listen), or stop it first", id)
	}
	// The lead may still be taken by a replica starting now: wait a while,
	// then say so rather than hang.
	runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var (
		ran   bool
		fnErr error
	)
	err = el.Run(runCtx, func(leadCtx context.Context) error {
		if ran {
			return nil
		}
		ran = true
		defer cancel() // done: hand the lead back at once
		t, err := a.beginTerm(leadCtx)
		if err != nil {
			fnErr = err
			return nil
		}
		defer t.end()
		eng, err := a.newEngine(leadCtx, el, t)
		if err == nil {
			fnErr = fn(t.ctx, eng)
		} else {
			fnErr = err
		}
		return nil
	})
	switch {
	case ran:
		return fnErr
	case err != nil:
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	id, _, _ := el.Leader(ctx)
	return fmt.Errorf("could not take the lead within 30 s (leader now: %q): send the command to the leading replica", id)
}
