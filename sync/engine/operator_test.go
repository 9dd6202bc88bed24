package engine

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state/mem"
)

// TestEngineOperatorClearHolds: an operator's clear holds the person back
// until their span ends, across restarts, and a clear that fails is
// retried as a clear — never replaced by a back-off that ends in a set.
func TestEngineOperatorClearHolds(t *testing.T) {
	t.Run("restarts", testOperatorClearHolds)
	t.Run("back-off", func(t *testing.T) {
		// Without a restart: the clear's 20m back-off ends at 40m, in
		// the span; it must be followed by a clear, not a set.
		synctest.Test(t, func(t *testing.T) {
			begin := time.Now()
			graph := &testutil.Presence{Begin: begin}
			graph.Fail = func(op, user string) error {
				if op == "clear" && time.Since(begin) < 30*time.Minute {
					return &presence.Error{Op: "clearPresence", User: user, Status: 503, Kind: presence.Retry, RetryAfter: 20 * time.Minute}
				}
				return nil
			}
			h := startHarness(t, testConfig(), ics(begin, "m", 10*time.Minute, time.Hour), nil, graph)
			h.until(20 * time.Minute)
			h.eng.Clear(context.Background(), []string{alice}, false)
			h.until(2 * time.Hour)
			h.stop()
			h.want("10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "40m0s clear alice@contoso.com")
		})
	})
}

func testOperatorClearHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		store := mem.New()
		graph := &testutil.Presence{Begin: begin}
		// Clears fail with a long Retry-After until 30m.
		graph.Fail = func(op, user string) error {
			if op == "clear" && time.Since(begin) < 30*time.Minute {
				return &presence.Error{Op: "clearPresence", User: user, Status: 503, Kind: presence.Retry, RetryAfter: 20 * time.Minute}
			}
			return nil
		}
		body := ics(begin, "m", 10*time.Minute, time.Hour, "n", 90*time.Minute, 10*time.Minute)
		h := startHarness(t, testConfig(), body, store, graph)
		h.until(20 * time.Minute)
		if _, err := h.eng.Clear(context.Background(), []string{alice}, false); err == nil {
			t.Errorf("Clear while Graph answers 503 = nil; want the error")
		}
		recs, _ := store.Sessions(t.Context())
		if s := recs[alice]; s.Pending != "clear" || !s.HeldUntil.Equal(begin.Add(70*time.Minute)) {
			t.Errorf("record after the failed clear = pending %q, held until %v; want clear pending, held until 70m",
				s.Pending, s.HeldUntil.Sub(begin))
		}

		// Restarted while the clear is still failing: the new engine
		// knows nothing of the back-off, and sends the clear again.
		h.until(25 * time.Minute)
		h.stop()
		h.start(testConfig())
		// Restarted again once the clear went through (at 45m, after the
		// 20m Retry-After): alice stays clear until her span ends.
		h.until(50 * time.Minute)
		var held bool
		for _, hp := range h.eng.Status(t.Context(), time.Now()).Held {
			if hp.User == alice && hp.Kind == HoldOperator && hp.Until.Equal(begin.Add(70*time.Minute)) {
				held = true
			}
		}
		if !held {
			t.Errorf("status at 50m: Held = %+v; want alice held by the operator until 70m", h.eng.Status(t.Context(), time.Now()).Held)
		}
		h.stop()
		h.start(testConfig())
		h.until(2 * time.Hour)
		h.stop()
		h.want(
			"10m0s set alice@contoso.com InAConferenceCall 1h0m0s",
			"45m0s clear alice@contoso.com",
			"1h30m0s set alice@contoso.com InAConferenceCall 10m0s")
		recs, _ = store.Sessions(t.Context())
		if s, ok := recs[alice]; ok {
			t.Errorf("alice's record after her spans = %+v; want none", s)
		}
	})
}

// TestExecutorForgetsEndedHolds: a hold is deleted once it has been over
// for holdMemory, so the map does not keep everyone who ever failed.
func TestExecutorForgetsEndedHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		graph := &testutil.Presence{Begin: begin}
		graph.Fail = func(op, user string) error {
			return &presence.Error{Op: "setPresence", User: user, Status: 403, Kind: presence.Permanent, Message: "no Teams license"}
		}
		h := startHarness(t, testConfig(), ics(begin, "m", 10*time.Minute, 30*time.Minute), nil, graph)
		count := func() int {
			h.eng.exec.mu.Lock()
			defer h.eng.exec.mu.Unlock()
			return len(h.eng.exec.holds)
		}
		h.until(20 * time.Minute)
		if n := count(); n != 1 {
			t.Errorf("holds during the refused span = %d; want 1", n)
		}
		h.until(40*time.Minute + holdMemory + 2*SafetyReconcile)
		if n := count(); n != 0 {
			t.Errorf("holds %v after the span ended = %d; want 0", holdMemory+2*SafetyReconcile, n)
		}
		h.stop()
	})
}
