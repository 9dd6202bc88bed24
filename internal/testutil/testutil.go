// Package testutil is the plumbing the project's tests share, kept once
// instead of copied into each package's tests: a log buffer that many
// goroutines may write to, and waiting in real time for a condition that
// another process or goroutine will make true.
//
// Tests of time-driven code should prefer virtual time (testing/synctest);
// WaitUntil is for what runs in real time: a daemon in a child process, an
// HTTP fake, a benchmark.
package testutil

import (
	"bytes"
	"strings"
	"sync"
	"time"
)

// LogBuffer collects log output (an io.Writer for slog handlers) safely
// across goroutines. The zero value is ready to use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines returns the non-empty lines written so far that contain every one
// of subs (all lines when subs is empty).
func (b *LogBuffer) Lines(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if l == "" {
			continue
		}
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// PollInterval is how often WaitUntil checks its condition.
const PollInterval = 10 * time.Millisecond

// WaitUntil calls cond every PollInterval until it returns true or within
// has passed, and reports whether it held. It always calls cond at least
// once, and once more at the deadline, so a condition that became true
// while it slept is not missed. The caller says what it waited for:
//
//	if !testutil.WaitUntil(5*time.Second, func() bool { return len(g.Calls()) >= 2 }) {
//		t.Fatalf("saw %d calls after 5s; want 2", len(g.Calls()))
//	}
func WaitUntil(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(PollInterval, left))
	}
}
