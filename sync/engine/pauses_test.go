package engine

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state"
)

// pause pauses alice now, until until (zero: until she resumes), and
// waits for what it set off.
func (h *harness) pause(until time.Time) {
	h.t.Helper()
	if err := h.eng.Pause(context.Background(), alice, until); err != nil {
		h.t.Fatalf("Pause(alice) = %v", err)
	}
	synctest.Wait()
}

func (h *harness) resume() {
	h.t.Helper()
	if err := h.eng.Resume(context.Background(), alice); err != nil {
		h.t.Fatalf("Resume(alice) = %v", err)
	}
	synctest.Wait()
}

// TestPause: paused mid-meeting, alice is cleared at once; a live signal
// while she is paused (a Zoom phone call) changes nothing; resumed while
// the meeting still runs, she is set again at once for the rest of it.
func TestPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, signalConfig(), ics(time.Now(), "m", 10*minute, time.Hour), nil, nil)
		h.until(20 * minute)
		h.pause(time.Time{})
		if p, ok := h.eng.Paused(alice, time.Now()); !ok || !p.Until.IsZero() {
			t.Errorf("Paused(alice) = %+v, %v; want paused until she resumes", p, ok)
		}
		h.until(30 * minute)
		h.presenceAt(alice, signals.ZoomOnPhoneCall, 30*minute)
		h.until(35 * minute)
		h.presenceAt(alice, "Available", 35*minute)
		h.until(40 * minute)
		h.resume()
		if _, ok := h.eng.Paused(alice, time.Now()); ok {
			t.Errorf("Paused(alice) after Resume = true; want false")
		}
		h.until(2 * time.Hour)
		h.stop()
		h.wantAnyOrder("10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
			"20m0s clear alice@contoso.com",
			"40m0s set alice@contoso.com InAConferenceCall 30m0s")
	})
}

// TestPauseUntil: a pause with an end ends by itself: alice, paused from
// 20m until 45m in a meeting until 70m, is set again at 45m; the status
// view does not list her as busy meanwhile.
func TestPauseUntil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, testConfig(), ics(time.Now(), "m", 10*minute, time.Hour), nil, nil)
		h.until(20 * minute)
		h.pause(h.begin.Add(45 * minute))
		h.until(30 * minute)
		for _, b := range h.eng.Status(t.Context(), time.Now()).Busy {
			if b.User == alice {
				t.Errorf("Status().Busy lists alice while she is paused: %+v", b)
			}
		}
		if held := h.eng.Status(t.Context(), time.Now()).Held; len(held) != 1 || held[0].User != alice || held[0].Kind != HoldPaused || !held[0].Until.Equal(h.begin.Add(45*minute)) {
			t.Errorf("Status().Held = %+v; want alice paused until 45m", held)
		}
		h.until(44 * minute)
		if _, ok := h.eng.Paused(alice, time.Now()); !ok {
			t.Errorf("Paused(alice) at 44m = false; want paused until 45m")
		}
		h.until(2 * time.Hour)
		if _, ok := h.eng.Paused(alice, time.Now()); ok {
			t.Errorf("Paused(alice) at 2h = true; want over at 45m")
		}
		h.stop()
		h.want("10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "20m0s clear alice@contoso.com",
			"45m0s set alice@contoso.com InAConferenceCall 25m0s")
	})
}

// TestPauseSurvivesRestart: the pause is in the store; an engine started
// again on it sets nothing for alice, also for a meeting that starts
// later; resumed, she is set for the next; a pause another replica wrote
// (straight into the shared store) clears her within InboxEvery.
func TestPauseSurvivesRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		h := startHarness(t, cfg, ics(time.Now(), "m", 10*minute, time.Hour, "later", 2*time.Hour, 30*minute, "third", 3*time.Hour, time.Hour), nil, nil)
		h.until(20 * minute)
		h.pause(time.Time{})
		h.until(25 * minute)
		h.stop()
		h.until(30 * minute)
		h.start(cfg)
		h.until(3 * time.Hour)
		if _, ok := h.eng.Paused(alice, time.Now()); !ok {
			t.Errorf("Paused(alice) after the restart = false; want still paused")
		}
		h.resume()
		// Another replica pauses her again, through the shared store,
		// during the third meeting: she is cleared at the next read of the
		// store (every InboxEvery from the engine's start at 30m).
		h.until(3*time.Hour + 5*minute + time.Second)
		if err := h.store.PutPause(context.Background(), pauseOf(alice, time.Now())); err != nil {
			t.Fatal(err)
		}
		h.until(3*time.Hour + 10*minute)
		if _, ok := h.eng.Paused(alice, time.Now()); !ok {
			t.Errorf("Paused(alice) after another replica stored a pause = false; want paused")
		}
		h.stop()
		h.want("10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "20m0s clear alice@contoso.com",
			"3h0m0s set alice@contoso.com InAConferenceCall 1h0m0s", "3h5m2s clear alice@contoso.com")
	})
}

// pauseOf is an indefinite pause of id from since.
func pauseOf(id string, since time.Time) state.Pause { return state.Pause{ID: id, Since: since} }
