package sync

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ResyncRequest says what a resync covers.
type ResyncRequest struct {
	Sources []string // sources to read again (all when empty)
	Users   []string // users whose presence may change (all when empty)
	DryRun  bool     // plan the calls but send none
}

// Resync reads the requested sources now, ignoring cache validators, and
// reconciles the requested users at once.
func (e *Engine) Resync(ctx context.Context, req ResyncRequest) ([]Result, error) {
	for _, n := range req.Sources {
		if !e.feeds.has(n) {
			return nil, fmt.Errorf("unknown source %q", n)
		}
	}
	errs := e.feeds.pollAll(ctx, req.Sources, true, nil)
	var results []Result
	if req.DryRun {
		actions := e.plan(req.Users)
		for _, a := range actions {
			results = append(results, Result{Action: a})
		}
	} else {
		results = e.reconcile(ctx, req.Users)
	}
	return results, errors.Join(errs...)
}

// Clear clears the presence of the given users (all users we hold a session
// for, with all) and holds them back until their current span is over, so
// the next boundary does not set it again.
func (e *Engine) Clear(ctx context.Context, users []string, all bool) ([]Result, error) {
	now := time.Now()
	in, err := e.input(now)
	if err != nil {
		return nil, err
	}
	if all {
		users = sortedKeys(in.Sessions)
	}
	actions := make([]Action, 0, len(users))
	for _, u := range users {
		a := Action{Op: OpClear, User: u, Reason: "operator"}
		a.Prev, a.HasPrev = in.Sessions[u]
		actions = append(actions, a)
		if s, ok := SpanAt(in.Spans[u], now); ok {
			e.exec.holdUntil(u, s.End, "cleared by operator")
		}
	}
	e.reconcileMu.Lock()
	defer e.reconcileMu.Unlock()
	results := e.exec.run(ctx, actions)
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("clear %s: %w", r.Action.User, r.Err))
		}
	}
	return results, errors.Join(errs...)
}

// Ready reports whether the first pass is done, with each source's status.
func (e *Engine) Ready() (bool, []SourceStatus) {
	st := e.feeds.statuses()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ready, st
}
