package sync

import (
	"context"
	gosync "sync"
	"time"
)

// Limiter allows at most n events in any window of length w: a sliding
// window, because Graph's presence limit is stated that way (10,000 calls
// per 30 s per app per tenant). Unlike a token bucket with a burst, it can
// never exceed n in a window, and it never waits longer than the window
// requires.
type Limiter struct {
	mu   gosync.Mutex
	n    int
	w    time.Duration
	ring []time.Time // times of the last n grants, oldest at next
	next int
}

// NewLimiter returns a limiter of n events per w. n < 1 means no limit.
func NewLimiter(n int, w time.Duration) *Limiter {
	if n < 1 || w <= 0 {
		return &Limiter{}
	}
	return &Limiter{n: n, w: w, ring: make([]time.Time, n)}
}

// Wait blocks until an event may happen, or ctx is done.
func (l *Limiter) Wait(ctx context.Context) error {
	if l.n == 0 {
		return ctx.Err()
	}
	for {
		l.mu.Lock()
		now := time.Now()
		oldest := l.ring[l.next]
		if oldest.IsZero() || now.Sub(oldest) >= l.w {
			l.ring[l.next] = now
			l.next = (l.next + 1) % l.n
			l.mu.Unlock()
			return nil
		}
		wait := l.w - now.Sub(oldest)
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
