package policy

import (
	"context"
	"math"
	"sync"
	"time"
)

// Gate bounds the Graph calls in flight, at a size that follows the work:
// enough calls in flight to reach the allowed rate at the latency Graph
// shows (rate × latency, with half again as headroom), never more than
// graph.max_concurrency. At Graph's 333 presence calls a second and its
// ~150 ms a call that is ~75; a fixed small number would cap a burst at
// concurrency/latency calls a second instead (4 in flight at 150 ms: 27/s).
type Gate struct {
	ceiling int     // graph.max_concurrency
	rate    float64 // allowed calls per second; 0: no limit (the ceiling)

	mu      sync.Mutex
	active  int
	latency time.Duration // moving average of a call's latency
	free    chan struct{} // closed (and replaced) when a call ends
}

// initialLatency is the guess before any call has been timed: Graph's
// typical latency, a little pessimistic.
const initialLatency = 200 * time.Millisecond

// NewGate returns a gate of at most ceiling calls in flight
// (graph.max_concurrency), sized for r (the WriteRate the pacer keeps to).
func NewGate(ceiling int, r Rate) *Gate {
	return &Gate{ceiling: max(ceiling, 1), rate: r.PerSecond(), latency: initialLatency, free: make(chan struct{})}
}

// size is how many calls may be in flight now. g.mu must be held.
func (g *Gate) size() int {
	if g.rate == 0 {
		return g.ceiling
	}
	n := int(math.Ceil(g.rate*g.latency.Seconds()*1.5)) + 1
	return min(max(n, 1), g.ceiling)
}

// Acquire blocks until a call may start, or ctx is done.
func (g *Gate) Acquire(ctx context.Context) error {
	for {
		g.mu.Lock()
		if g.active < g.size() {
			g.active++
			g.mu.Unlock()
			return nil
		}
		free := g.free
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-free:
		}
	}
}

// Release ends a call that took latency (0: not timed, e.g. no call made).
func (g *Gate) Release(latency time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if latency > 0 {
		// An exponentially weighted average: the last ten calls or so.
		g.latency += (latency - g.latency) / 8
	}
	close(g.free)
	g.free = make(chan struct{})
}

// InFlight returns the calls in flight and the size now.
func (g *Gate) InFlight() (active, size int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.active, g.size()
}
