// Package logsample keeps a flood of like events (refused requests on a
// listener the internet reaches, a page polled by a rebinding attack) from
// becoming one log line each: one line per interval is let through, with
// the count of those that were not.
package logsample

import (
	"sync"
	"time"
)

// Sampler lets one event through per Every and counts the others. The zero
// value with Every set is ready to use; Every 0 lets every event through.
type Sampler struct {
	Every time.Duration

	mu      sync.Mutex
	next    time.Time // nothing is let through before then
	skipped int       // events not let through since the last one
}

// Allow reports whether the event at now is to be logged and, when it is,
// how many events were not since the last one logged.
func (s *Sampler) Allow(now time.Time) (skipped int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.next) {
		s.skipped++
		return 0, false
	}
	skipped = s.skipped
	s.next, s.skipped = now.Add(s.Every), 0
	return skipped, true
}
