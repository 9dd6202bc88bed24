package policy

import (
	"context"
	"sync"
	"time"
)

// Pacer allows at most n events in any window of length w: a sliding
// window, because Graph's presence limit is stated that way (10,000 calls
// per 30 s per app per tenant). Unlike a token bucket with a burst, it can
// never exceed n in a window, and it never waits longer than the window
// requires.
//
// Graph counts a call when it arrives, some time after the limiter let it
// go (a token request, a TLS handshake, the network), and that time
// varies. So that arrivals too stay within the limit, a call started with
// Acquire holds its slot until it ends, and the slot counts from then: a
// call arrives before its answer comes back, so the call that reuses the
// slot n calls later arrives more than w after it.
type Pacer struct {
	rate   Rate
	mu     sync.Mutex
	paused time.Time // no event before this (Pause)
	n      int
	w      time.Duration
	ring   []time.Time     // when each of the last n events ended, oldest at next
	busy   []chan struct{} // non-nil while the call holding that slot runs
	next   int
}

// NewPacer returns a pacer of r (r.N events per r.Window). The zero Rate
// means no limit (but Pause still holds events back). graph's client
// takes one for the presence writes (WriteRate) and one for the reads
// (ReadRate); it satisfies graph.Pacer.
func NewPacer(r Rate) *Pacer {
	if !r.Limited() {
		return &Pacer{}
	}
	n := r.N
	return &Pacer{rate: r, n: n, w: r.Window, ring: make([]time.Time, n), busy: make([]chan struct{}, n)}
}

// Rate is the rate p keeps to.
func (l *Pacer) Rate() Rate { return l.rate }

// Wait blocks until an event may happen, or ctx is done. The event counts
// from now.
func (l *Pacer) Wait(ctx context.Context) error {
	release, err := l.Acquire(ctx)
	if err == nil {
		release()
	}
	return err
}

// Acquire blocks until a call may start, or ctx is done. The caller calls
// release when the call has ended (answered or failed); its slot counts
// from then.
func (l *Pacer) Acquire(ctx context.Context) (release func(), err error) {
	for {
		l.mu.Lock()
		if wait := time.Until(l.paused); wait > 0 {
			l.mu.Unlock()
			if err := sleep(ctx, wait); err != nil {
				return nil, err
			}
			continue
		}
		if l.n == 0 {
			l.mu.Unlock()
			return func() {}, ctx.Err()
		}
		i := l.next
		if ch := l.busy[i]; ch != nil {
			// The call n calls ago is still running.
			l.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-ch:
			}
			continue
		}
		now := time.Now()
		last := l.ring[i]
		if last.IsZero() || now.Sub(last) >= l.w {
			ch := make(chan struct{})
			l.ring[i], l.busy[i] = now, ch
			l.next = (i + 1) % l.n
			l.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					l.mu.Lock()
					l.ring[i], l.busy[i] = time.Now(), nil
					l.mu.Unlock()
					close(ch)
				})
			}, nil
		}
		wait := l.w - now.Sub(last)
		l.mu.Unlock()
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// Pause holds every event back for d from now: Graph answered 429 and
// throttles the whole app, not one caller. A shorter pause than one in
// force changes nothing.
func (l *Pacer) Pause(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until := time.Now().Add(d); until.After(l.paused) {
		l.paused = until
	}
}

// sleep waits d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
