package graph

import (
	"context"
	"sync"
	"time"
)

// limiter allows at most limit events in any window (a sliding log): the
// client never sends presence calls faster than Graph's service limit
// (10,000 per 30 s per app per tenant), so a burst of meeting starts is
// paced instead of answered 429.
type limiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	times []time.Time // ring of the last limit events
	next  int
}

func newLimiter(limit int, window time.Duration, now func() time.Time) *limiter {
	return &limiter{limit: limit, window: window, now: now}
}

// wait blocks until one more event fits in the window, and records it.
func (l *limiter) wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		now := l.now()
		if len(l.times) < l.limit {
			l.times = append(l.times, now)
			l.mu.Unlock()
			return nil
		}
		oldest := l.times[l.next]
		if d := oldest.Add(l.window).Sub(now); d > 0 {
			l.mu.Unlock()
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		l.times[l.next] = now
		l.next = (l.next + 1) % l.limit
		l.mu.Unlock()
		return nil
	}
}
