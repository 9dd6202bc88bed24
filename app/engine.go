package app

import (
	"context"
	"fmt"
	"time"

	"github.com/calpresence/calpresence/server"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/engine"
)

// The App is what the server and the webhooks talk to (server.Engine,
// signals.Sink): it hands each request to the engine running now, and
// answers for itself when none does. /readyz and the status page carry the
// outcome of the last reload.

var _ server.Engine = (*App)(nil)

// Readiness is /readyz: the engine's, with the last reload's outcome; a
// reload that failed is listed among the degraded details (the
// configuration in force keeps working). Not ready while no engine runs.
//
// With several replicas it says which role this one has: a standby is
// ready while it could take the lead and act (standbyReasons), with no
// engine of its own.
func (a *App) Readiness(ctx context.Context, all bool) engine.Readiness {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	eng, down := a.current()
	rep := a.replica(ctx)
	var r engine.Readiness
	switch {
	case eng != nil:
		r = eng.Readiness(all)
	case rep != nil && rep.Role == "standby":
		reasons := a.standbyReasons(rep)
		r = engine.Readiness{Ready: len(reasons) == 0, Reasons: reasons, Sources: []engine.SourceStatus{}}
	case rep != nil && rep.Error != "":
		r = engine.Readiness{Reasons: []string{rep.Error}, Sources: []engine.SourceStatus{}}
	default:
		r = engine.Readiness{Reasons: []string{"no engine running: " + down}, Sources: []engine.SourceStatus{}}
	}
	if rep != nil {
		r.Role, r.Replica = rep.Role, rep
	}
	if err := a.pingStore(ctx); err != nil {
		r.Ready = false
		r.Reasons = append(r.Reasons, err.Error())
	}
	r.Reload = a.lastReload()
	if rl := r.Reload; rl != nil && rl.Error != "" {
		r.Degraded = append(r.Degraded, fmt.Sprintf("reload failed at %s: %s (the configuration in force stays)",
			rl.At.UTC().Format(time.RFC3339), rl.Error))
	}
	return r
}

// ReadyTimeout bounds what /readyz asks the state store and the database
// (who leads): a store that does not answer makes it answer not ready
// after this long, rather than hang the probe.
const ReadyTimeout = 2 * time.Second

// pinger is the part of a state store that says whether it can be
// reached now (state.Store's Ping).
type pinger interface {
	Ping(ctx context.Context) error
}

// pingStore asks the state store whether it answers, under ctx.
func (a *App) pingStore(ctx context.Context) error {
	p, ok := a.store.(pinger)
	if !ok {
		return nil
	}
	if err := p.Ping(ctx); err != nil {
		return fmt.Errorf("the state store does not answer: %w", err)
	}
	return nil
}

// standbyReasons say why a standby could not act if it took the lead now
// (none: it could): it must reach the database, and hold a token from
// Graph's authority as a leader must (engine.Engine.Readiness), or a rollout
// would replace a working leader with replicas whose credentials fail.
func (a *App) standbyReasons(rep *engine.Replica) []string {
	var reasons []string
	if rep.Error != "" {
		reasons = append(reasons, rep.Error)
	}
	if a.graph != nil && !a.graph.Authenticated() {
		reasons = append(reasons, "Graph's authority has issued no token since start (check the credentials)")
	}
	return reasons
}

// Status is the status page's snapshot.
func (a *App) Status(ctx context.Context, now time.Time) engine.Status {
	eng, down := a.current()
	rep := a.replica(ctx)
	var st engine.Status
	switch {
	case eng != nil:
		st = eng.Status(ctx, now)
	case rep != nil && rep.Role == "standby":
		st = engine.Status{Now: now, Ready: len(a.standbyReasons(rep)) == 0} // the replica line says the rest
	default:
		st = engine.Status{Now: now, Down: down}
	}
	st.Replica = rep
	st.Reload = a.lastReload()
	return st
}

// Resync is POST /-/resync.
func (a *App) Resync(ctx context.Context, req engine.ResyncRequest) ([]engine.Result, error) {
	eng, err := a.running(ctx)
	if err != nil {
		return nil, err
	}
	return eng.Resync(ctx, req)
}

// Clear is POST /-/clear.
func (a *App) Clear(ctx context.Context, users []string, all bool) ([]engine.Result, error) {
	eng, err := a.running(ctx)
	if err != nil {
		return nil, err
	}
	return eng.Clear(ctx, users, all)
}

// Signal hands a live meeting signal to the engine (signals.Sink).
//
// A standby has no engine: it queues the signal in the shared store for
// the leader's engine to apply (signals.Queue, TakeInbox), since the
// vendor was answered already and an ingress sends webhooks to any ready
// replica.
//
// So does a leader whose engine has been told to stop (its lead lost or
// handed over, fenced, or the process shutting down): the signal must
// reach the engine that runs next, never this one's memory alone.
func (a *App) Signal(ctx context.Context, s state.Signal) (string, error) {
	eng, err := a.running(ctx)
	if err == nil && eng.Accepting() {
		return eng.Signal(ctx, s)
	}
	if st, ok := a.store.(signals.Store); ok {
		return signals.Queue(ctx, st, s)
	}
	if err == nil {
		err = fmt.Errorf("%w: the engine is stopping", server.ErrUnavailable)
	}
	return "", err
}

// running returns the engine running now, or an error wrapping
// server.ErrUnavailable that says why there is none.
func (a *App) running(ctx context.Context) (*engine.Engine, error) {
	eng, down := a.current()
	if eng != nil {
		return eng, nil
	}
	if rep := a.replica(ctx); rep != nil && rep.Role == "standby" {
		if rep.Leader != "" {
			return nil, fmt.Errorf("%w: this replica (%s) stands by: send admin actions to the leader, replica %s", server.ErrUnavailable, rep.ID, rep.Leader)
		}
		return nil, fmt.Errorf("%w: this replica (%s) stands by and no replica leads right now: try again in a few seconds", server.ErrUnavailable, rep.ID)
	}
	return nil, fmt.Errorf("%w: no engine running: %s", server.ErrUnavailable, down)
}

func (a *App) lastReload() *engine.ReloadStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reload
}
