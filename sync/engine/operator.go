package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/calpresence/calpresence/sync/identity"
	"github.com/calpresence/calpresence/sync/plan"
)

// ResyncRequest says what a resync covers.
type ResyncRequest struct {
	Sources []string // sources to read again (all when empty)
	// Users are the people whose presence may change (all when empty),
	// by any of their addresses or object id.
	Users  []string
	DryRun bool // plan the calls but send none
}

// Resync reads the requested sources now, ignoring cache validators, and
// reconciles the requested users at once.
func (e *Engine) Resync(ctx context.Context, req ResyncRequest) ([]Result, error) {
	for _, n := range req.Sources {
		if !e.feeds.has(n) {
			return nil, fmt.Errorf("unknown source %q", n)
		}
	}
	ids, err := e.people(ctx, req.Users)
	if err != nil {
		return nil, err
	}
	errs := e.feeds.pollAll(ctx, req.Sources, true, nil)
	e.resolveNew(ctx)
	var results []Result
	if req.DryRun {
		actions := e.plan(ctx, ids)
		for _, a := range actions {
			results = append(results, Result{Action: a})
		}
	} else {
		results = e.reconcile(ctx, ids)
	}
	return results, errors.Join(errs...)
}

// people maps addresses (any of a person's, or an object id) to object
// ids, looking up the ones not known yet. Nothing maps to nothing.
func (e *Engine) people(ctx context.Context, addresses []string) ([]string, error) {
	var ids []string
	for _, a := range addresses {
		id, err := e.dir.Person(ctx, a)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Clear clears the presence of the given people (by any of their
// addresses; all people we hold a session for, with all) and holds them
// back until their current span is over, so the next boundary does not set
// it again. The hold is recorded with the session (state.Session.HeldUntil):
// a restart or another replica honours it, and a clear that fails is
// retried as a clear until it goes through.
func (e *Engine) Clear(ctx context.Context, addresses []string, all bool) ([]Result, error) {
	users, err := e.people(ctx, addresses)
	if err != nil {
		return nil, err
	}
	e.reconcileMu.Lock()
	defer e.reconcileMu.Unlock()
	now := time.Now()
	in, err := e.input(ctx, now)
	if err != nil {
		return nil, err
	}
	if all {
		users = users[:0]
		for _, u := range sortedKeys(in.Sessions) {
			if in.Sessions[u].Live(now) {
				users = append(users, u) // not a record that is only a hold
			}
		}
	}
	actions := make([]plan.Action, 0, len(users))
	for _, u := range users {
		a := plan.Action{Op: plan.OpClear, User: u, Reason: plan.ReasonOperator}
		a.Prev, a.HasPrev = in.Sessions[u]
		if s, ok := plan.SpanAt(in.Spans[u], now); ok {
			a.Span, a.HoldUntil = s, s.End
		}
		actions = append(actions, a)
	}
	results := e.exec.run(ctx, e.named(actions))
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("clear %s: %w", r.Action.Display(), r.Err))
		}
	}
	e.scheduleWake(e.nextWake(ctx, in, nil))
	return results, errors.Join(errs...)
}

// Reconciled reports whether the start-up's first reconcile, from the
// stored copies and sessions, is done: the cheap part of Ready, which
// also lists every source (for the load tool, which asks every few
// milliseconds).
func (e *Engine) Reconciled() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ready
}

// Ready reports whether the first pass is done, with each source's status.
func (e *Engine) Ready() (bool, []SourceStatus) {
	r := e.Readiness(true)
	return r.Ready, r.Sources
}

// ReadySourcesListed is how many sources /readyz names, among those that
// want a look, and how many of them it describes under degraded; the
// counts cover them all, and /readyz?verbose lists every source.
const ReadySourcesListed = 50

// Readiness is what /readyz answers.
type Readiness struct {
	Ready bool `json:"ready"`
	// Reasons say why the worker is not ready (empty when it is).
	Reasons []string `json:"reasons,omitempty"`
	// Degraded are what wants a look although the worker is ready: failing
	// or stale sources, people held back, addresses naming nobody.
	Degraded []string `json:"degraded,omitempty"`
	// SourceCounts counts the configured sources; Sources lists those
	// that want a look, or every source when asked (verbose).
	SourceCounts SourceCounts                `json:"source_counts"`
	Sources      []SourceStatus              `json:"sources"`
	Unresolved   *identity.UnresolvedSummary `json:"unresolved_addresses,omitempty"`
	// Reload is the outcome of the last reload of the configuration (nil:
	// none since start). The daemon fills it in: a configuration it
	// refused never reached the engine.
	Reload *ReloadStatus `json:"reload,omitempty"`
	// Role is leader or standby with several replicas (state.driver
	// postgres); Replica says more. Empty with one replica.
	Role    string   `json:"role,omitempty"`
	Replica *Replica `json:"replica,omitempty"`
}

// Readiness reports whether the worker can do its job: not before the
// first reconcile is done, while no source has loaded (from the network
// or a stored copy), or while Graph's authority has issued no token since
// start (a broken secret must not replace a working pod in a rollout).
// Once ready, what is degraded is listed but does not make it unready.
//
// all lists every source in Sources; otherwise Sources lists only those
// that want a look (not loaded, failing, stale), the first
// ReadySourcesListed by name, and SourceCounts counts them all: a probe
// every few seconds must not cost a listing of 100,000 sources.
func (e *Engine) Readiness(all bool) Readiness {
	now := time.Now()
	counts, sources, flagged := e.feeds.health(all, ReadySourcesListed, now)
	r := Readiness{SourceCounts: counts, Sources: sources, Unresolved: identity.SummarizeUnresolved(e.dir.Unresolved())}
	e.mu.Lock()
	ready := e.ready
	e.mu.Unlock()
	if !ready {
		r.Reasons = append(r.Reasons, "the first reconcile is not done yet")
	}
	described := 0
	for _, s := range r.Sources {
		switch {
		case described == ReadySourcesListed:
		case s.Stale:
			r.Degraded = append(r.Degraded, fmt.Sprintf("source %s is stale: its copy is %s old", s.Name, s.CopyAge))
			described++
		case !s.Healthy && s.LastError != "":
			r.Degraded = append(r.Degraded, fmt.Sprintf("source %s is failing: %s", s.Name, s.LastError))
			described++
		}
	}
	if more := flagged - described; more > 0 {
		r.Degraded = append(r.Degraded, fmt.Sprintf("%d more sources failing or stale (/readyz?verbose lists every source)", more))
	}
	if counts.Loaded == 0 && counts.Total > 0 {
		r.Reasons = append(r.Reasons, "no source has loaded yet (neither read nor a stored copy)")
	}
	if e.authenticated != nil && !e.authenticated() {
		r.Reasons = append(r.Reasons, "Graph's authority has issued no token since start (check the credentials)")
	}
	if n := len(e.exec.heldAt(now)); n > 0 {
		r.Degraded = append(r.Degraded, fmt.Sprintf("%d people held back from Graph calls (see the status page)", n))
	}
	if u := r.Unresolved; u != nil {
		r.Degraded = append(r.Degraded, fmt.Sprintf("%d calendar addresses name no Entra user", u.Count))
	}
	r.Ready = len(r.Reasons) == 0
	return r
}

// Unresolved lists the calendar addresses met since start that name no
// Entra user yet (unknown, ambiguous, or a lookup failing), for /readyz.
func (e *Engine) Unresolved() []identity.Unresolved { return e.dir.Unresolved() }
