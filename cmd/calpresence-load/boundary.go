package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/presence"
)

// slowPresence is a Graph that answers each presence call after latency,
// paced by the daemon's limiter as graph.Client paces its requests
// (graph.WithPacer), and that notes when each call was sent.
type slowPresence struct {
	*countingPresence
	latency time.Duration
	pacer   *policy.Pacer

	mu    sync.Mutex
	calls []sentCall
}

type sentCall struct {
	op string
	at time.Time
}

func (p *slowPresence) call(ctx context.Context, op string) error {
	release, err := p.pacer.Acquire(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.calls = append(p.calls, sentCall{op, time.Now()})
	p.mu.Unlock()
	time.Sleep(p.latency)
	release()
	return nil
}

func (p *slowPresence) SetPresence(ctx context.Context, id, availability, activity string, exp time.Duration) error {
	p.countingPresence.SetPresence(ctx, id, availability, activity, exp)
	return p.call(ctx, "set")
}

func (p *slowPresence) ClearPresence(ctx context.Context, id string) error {
	p.countingPresence.ClearPresence(ctx, id)
	return p.call(ctx, "clear")
}

func (p *slowPresence) ResolveUser(ctx context.Context, address string) (presence.Person, error) {
	time.Sleep(p.latency)
	return p.countingPresence.ResolveUser(ctx, address)
}

func (p *slowPresence) sent() []sentCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// boundary runs the daemon's loop (Engine.Run, on a state file, nothing
// stored yet: every address is looked up first) against a Graph answering
// in -latency, with the feeds' clock shifted so that a quarter hour, when
// many meetings start and end, falls -lead after the start. It reports how
// long the first pass took to make every call it needed (the target: calls
// needed / 333 s + 5 s), then the boundary: when its first call left, and
// the lag of its sets and clears (targets: first ≤ 100 ms, p99 ≤ 5 s).
func boundary(ctx context.Context, o options, out io.Writer) error {
	start := time.Now()
	at := start.Add(o.lead).Truncate(time.Second)
	o.shift = at.Sub(at.Truncate(15 * time.Minute))
	h, err := newHarness(o)
	if err != nil {
		return err
	}
	defer h.close()
	pres := &slowPresence{countingPresence: h.pres, latency: o.latency,
		pacer: policy.NewPacer(policy.WriteRate(h.cfg.Graph))}
	eng, closeFn, err := h.newEngineOn(o.state, pres)
	if err != nil {
		return err
	}
	defer closeFn()
	fmt.Fprintf(out, "calpresence-load: %d feeds × %d meetings, Graph latency %v, boundary at %s (%v after start)\n",
		o.feeds, o.meetings, o.latency, at.Format(time.TimeOnly), at.Sub(start).Round(time.Second))

	// The first pass's profile: from here until every call is made.
	stopProfile, err := startCPUProfile(o.cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(runCtx) }()
	defer func() { stop(); <-done }()

	// The first pass: ready, every address looked up (one user a feed),
	// and no call for 5 s after the last. (Polled cheaply: asking for the
	// status page's snapshot ten times a second would cost the daemon CPU.)
	var ready, complete time.Time
	for complete.IsZero() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		now := time.Now()
		if ready.IsZero() { // Ready lists 10,000 sources: not ten times a second all along
			if ok, _ := eng.Ready(); ok {
				ready = now
			}
		}
		calls := pres.sent()
		if !ready.IsZero() && pres.resolves.Load() >= int64(o.feeds) && len(calls) > 0 && now.Sub(calls[len(calls)-1].at) > 5*time.Second {
			complete = calls[len(calls)-1].at
		}
		if now.After(at.Add(-10 * time.Second)) {
			return fmt.Errorf("the first pass was not complete 10 s before the boundary (ready %v, %d calls)", !ready.IsZero(), len(calls))
		}
	}
	stopProfile()
	if o.memprofile != "" {
		if err := writeHeapProfile(o.memprofile); err != nil {
			return err
		}
	}
	firstCalls := len(pres.sent())
	fmt.Fprintf(out, "first pass: ready after %v, all %d calls made after %v (%d lookups); target calls/333 + 5 s = %.1f s\n",
		ready.Sub(start).Round(time.Millisecond), firstCalls, complete.Sub(start).Round(time.Millisecond),
		pres.resolves.Load(), float64(firstCalls)/333+5)

	// The boundary, and 30 s after it.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(at.Add(30 * time.Second))):
	}
	var sets, clears []time.Duration
	first, seen := time.Duration(0), false
	for _, c := range pres.sent()[firstCalls:] {
		lag := c.at.Sub(at)
		if lag < -10*time.Second {
			continue // a late call of the first pass, not the boundary's (lead_burst is at most seconds)
		}
		if !seen || lag < first {
			first, seen = lag, true
		}
		if c.op == "set" {
			sets = append(sets, lag)
		} else {
			clears = append(clears, lag)
		}
	}
	fmt.Fprintf(out, "boundary: first call %v after it (negative: sent ahead of a large burst, lead_burst)\n", first.Round(time.Millisecond))
	for _, x := range []struct {
		what string
		lags []time.Duration
	}{{"sets", sets}, {"clears", clears}} {
		if len(x.lags) == 0 {
			fmt.Fprintf(out, "  %-6s none\n", x.what)
			continue
		}
		slices.Sort(x.lags)
		fmt.Fprintf(out, "  %-6s %5d  min %v  p50 %v  p99 %v  max %v\n", x.what, len(x.lags), x.lags[0].Round(time.Millisecond),
			pct(x.lags, 50).Round(time.Millisecond), pct(x.lags, 99).Round(time.Millisecond), x.lags[len(x.lags)-1].Round(time.Millisecond))
	}
	fmt.Fprintf(out, "peak RSS %s\n", mb(peakRSS()))
	return nil
}

// pct is the p-th percentile of sorted lags, nearest rank.
func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
