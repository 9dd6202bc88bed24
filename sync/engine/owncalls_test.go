package engine

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestOwnCall: "I'm on a call" makes alice Busy/InACall at once for its
// length (her lease ends with it: no clear needed); a second call ended
// early is cleared at once; a call survives an engine restart; a paused
// person's call sets nothing.
func TestOwnCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		h := startHarness(t, cfg, ics(time.Now(), "later", 10*time.Hour, time.Hour), nil, nil)
		ctx := context.Background()
		h.until(5 * minute)
		if err := h.eng.StartCall(ctx, alice, time.Now().Add(30*minute)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if c, ok := h.eng.OwnCall(alice, time.Now()); !ok || !c.Until.Equal(h.begin.Add(35*minute)) {
			t.Errorf("OwnCall(alice) = %+v, %v; want a call until 35m", c, ok)
		}
		if v := h.eng.Person(t.Context(), alice, time.Now()); len(v.Spans) == 0 || v.Spans[0].Activity != "InACall" || v.Spans[0].Meetings[0].Source != OwnCallSource {
			t.Errorf("Person(alice).Spans = %+v; want her call first, InACall from %s", v.Spans, OwnCallSource)
		}
		h.until(time.Hour)
		if _, ok := h.eng.OwnCall(alice, time.Now()); ok {
			t.Errorf("OwnCall(alice) at 1h = true; want over at 35m")
		}
		if err := h.eng.StartCall(ctx, alice, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		h.until(70 * minute)
		h.stop()
		h.until(75 * minute)
		h.start(cfg) // the call is stored: nothing to do again
		h.until(80 * minute)
		if err := h.eng.EndCall(ctx, alice); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		h.until(90 * minute)
		h.pause(time.Time{})
		if err := h.eng.StartCall(ctx, alice, time.Now().Add(20*minute)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		h.until(2 * time.Hour)
		h.stop()
		h.want("5m0s set alice@contoso.com InACall 30m0s",
			"1h0m0s set alice@contoso.com InACall 1h0m0s",
			"1h20m0s clear alice@contoso.com")
	})
}
