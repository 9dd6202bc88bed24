package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state"
)

const carol = "carol@partner.example" // users: carol@contoso.com

// presenceAt gives the engine a Zoom presence status of email that
// happened at begin+at, delivered now.
func (h *harness) presenceAt(email, status string, at time.Duration) string {
	h.t.Helper()
	res, err := h.eng.Signal(context.Background(), Signal{Vendor: "zoom", Event: state.SignalPresence, Meeting: signals.ZoomPresenceKey,
		Email: email, Status: status, At: h.begin.Add(at), Received: time.Now()})
	if err != nil {
		h.t.Fatalf("Signal(presence %s %s) = %v", email, status, err)
	}
	synctest.Wait()
	return res
}

// TestEngineZoomPresence: On_Phone_Call sets InACall until Available; a
// status delivered late never overrides a newer one; Presenting is
// DoNotDisturb/Presenting over a calendar meeting; an Available never ends
// the calendar's span.
func TestEngineZoomPresence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, signalConfig(), zoomFeed(time.Now(), "m", 10*minute, time.Hour), nil, nil)
		h.until(20 * minute)
		h.presenceAt(alice, signals.ZoomPresenting, 20*minute)
		h.until(30 * minute)
		h.presenceAt(alice, "Available", 30*minute)
		h.until(120 * minute)
		h.presenceAt(carol, signals.ZoomOnPhoneCall, 120*minute)
		h.until(125 * minute)
		// The status page lists it: whose, since when, which vendor.
		live := h.eng.Status(time.Now()).Live
		if len(live) != 1 || live[0].Email != carol || live[0].Vendor != "zoom" || live[0].Status != signals.ZoomOnPhoneCall ||
			!live[0].Since.Equal(h.begin.Add(120*minute)) || live[0].Pair.Activity != "InACall" {
			t.Errorf("Status().Live = %+v; want carol's On_Phone_Call since 2h", live)
		}
		h.until(130 * minute)
		h.presenceAt(carol, "Available", 130*minute)
		h.until(131 * minute)
		// Out of order: this On_Phone_Call happened before the Available.
		h.presenceAt(carol, signals.ZoomOnPhoneCall, 125*minute)
		h.until(3 * time.Hour)
		h.stop()
		h.wantAnyOrder("10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
			// Presenting wins while it lasts; after it, the calendar's
			// meeting shows again until its end, which no presence
			// status cuts (the lease then ends with it).
			"20m0s set alice@contoso.com Presenting 4h0m0s", "30m0s set alice@contoso.com InAConferenceCall 40m0s",
			"2h0m0s set carol@contoso.com InACall 4h0m0s", "2h10m0s clear carol@contoso.com")
	})
}

// fakePeople is a Webex people API that fails while fail > 0.
type fakePeople struct {
	mu    sync.Mutex
	fail  int
	calls int
}

func (p *fakePeople) Email(ctx context.Context, id string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.fail > 0 {
		p.fail--
		return "", errors.New("HTTP 503")
	}
	if id == "carol-id" {
		return carol, nil
	}
	return "", signals.ErrNoPerson
}

func (p *fakePeople) failNext(n int) {
	p.mu.Lock()
	p.fail = n
	p.mu.Unlock()
}

// TestEngineWebexCalls: two calls at once keep the person busy until both
// end; a failed look-up of the person is tried again with back-off, for
// the start and for the end of a call (never dropped).
func TestEngineWebexCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		people := &fakePeople{}
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{"zoom": zoomFeed(time.Now(), "m", 10*minute, time.Hour)}, errs: map[string]error{}},
			store: NewMemStore(), begin: time.Now(), metrics: NewMetrics(nil)}
		h.graph = &testutil.Presence{Begin: h.begin}
		h.startWith(signalConfig(), func(o *Options) { o.People = people }, nil)
		call := func(id, status string) string {
			t.Helper()
			res, err := h.eng.Signal(context.Background(), Signal{Vendor: "webex", Event: state.SignalCall, Meeting: signals.KeyWebexCall + id,
				Person: "carol-id", Status: status, At: time.Now(), Received: time.Now()})
			if err != nil {
				t.Fatalf("Signal(call %s %s) = %v", id, status, err)
			}
			synctest.Wait()
			return res
		}
		h.until(120 * minute)
		people.failNext(2)
		if res := call("a", signals.WebexConnected); res != signals.Pending {
			t.Errorf("Signal with the look-up failing = %q; want %q", res, signals.Pending)
		}
		h.until(125 * minute)
		call("b", signals.WebexConnected)
		h.until(130 * minute)
		if live := h.eng.Status(time.Now()).Live; len(live) != 2 || live[0].Call != "b" || live[1].Call != "a" || live[0].Email != carol || live[0].Vendor != "webex" {
			t.Errorf("Status().Live = %+v; want calls b and a of carol", live)
		}
		call("a", signals.WebexCallEnded) // b still runs
		h.until(140 * minute)
		people.failNext(3)
		call("b", signals.WebexCallEnded)
		h.until(3 * time.Hour)
		if live := h.eng.Status(time.Now()).Live; len(live) != 0 {
			t.Errorf("Status().Live after the calls = %+v; want none", live)
		}
		h.stop()
		// The retries' back-off is jittered: the set comes seconds after
		// 2h, the clear seconds after 2h20m, and nothing in between.
		var carols []string
		for _, c := range h.graph.Got() {
			if strings.Contains(c, "carol") {
				carols = append(carols, c)
			}
		}
		if len(carols) != 2 || !strings.HasPrefix(carols[0], "2h0m") || !strings.HasSuffix(carols[0], " set carol@contoso.com InACall 4h0m0s") ||
			!strings.HasPrefix(carols[1], "2h20m") || !strings.HasSuffix(carols[1], " clear carol@contoso.com") {
			t.Errorf("Graph calls for carol = %q; want a set InACall seconds after 2h, a clear seconds after 2h20m", carols)
		}
		if people.calls < 2+3+3 {
			t.Errorf("people looked up %d times; want the failures tried again", people.calls)
		}
		if n := len(mustQueued(t, h.store)); n != 0 {
			t.Errorf("%d signals left in the inbox; want none", n)
		}
	})
}

// TestEngineDropsALookupPastTheCap: a call whose person cannot be looked
// up (the token gone) waits in the inbox, tried again with back-off, until
// it can no longer matter (webhooks.max_unscheduled after it): then it is
// dropped, and the inbox does not grow for ever.
func TestEngineDropsALookupPastTheCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		people := &fakePeople{}
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{"zoom": zoomFeed(time.Now(), "m", 10*minute, time.Hour)}, errs: map[string]error{}},
			store: NewMemStore(), begin: time.Now(), metrics: NewMetrics(nil)}
		h.graph = &testutil.Presence{Begin: h.begin}
		cfg := signalConfig()
		h.startWith(cfg, func(o *Options) { o.People = people }, nil)
		h.until(120 * minute)
		people.failNext(1 << 30)
		if _, err := h.eng.Signal(context.Background(), Signal{Vendor: "webex", Event: state.SignalCall, Meeting: signals.KeyWebexCall + "a",
			Person: "carol-id", Status: signals.WebexConnected, At: time.Now(), Received: time.Now()}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		capAt := 120*minute + cfg.Webhooks.MaxUnscheduled
		h.until(capAt - time.Minute)
		if n := len(mustQueued(t, h.store)); n != 1 {
			t.Errorf("%d signals in the inbox a minute before the cap; want the call, still tried", n)
		}
		h.until(capAt + 10*time.Minute) // the back-off tops at 5 min
		if n := len(mustQueued(t, h.store)); n != 0 {
			t.Errorf("%d signals in the inbox past the cap; want none", n)
		}
		h.stop()
		for _, c := range h.graph.Got() {
			if strings.Contains(c, "carol") {
				t.Errorf("Graph call for carol, whose look-up never answered: %s", c)
			}
		}
	})
}

func mustQueued(t *testing.T, st *MemStore) map[string]state.Signal {
	t.Helper()
	q, err := st.QueuedSignals()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestEngineAppliesTheInboxAtStart: a signal stored on receipt but not
// applied before the process stopped (the inbox) is applied by the next
// engine, one replica without an elector included; a stopping engine
// accepts no more signals.
func TestEngineAppliesTheInboxAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := NewMemStore()
		h := startHarness(t, signalConfig(), zoomFeed(time.Now(), "m", 10*minute, time.Hour), store, nil)
		h.until(30 * minute)
		if !h.eng.Accepting() {
			t.Error("a running engine does not accept signals")
		}
		eng := h.eng
		h.stop()
		if eng.Accepting() {
			t.Error("a stopped engine accepts signals")
		}
		if _, err := signals.Queue(store, Signal{Vendor: "zoom", Event: state.SignalEnded, Meeting: zoomKey, At: time.Now(), Received: time.Now()}); err != nil {
			t.Fatal(err)
		}
		h.start(signalConfig())
		h.until(2 * time.Hour)
		h.stop()
		h.wantAnyOrder("10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
			"30m0s clear alice@contoso.com", "30m0s clear bob@contoso.com")
		if n := len(mustQueued(t, store)); n != 0 {
			t.Errorf("%d signals left in the inbox; want none", n)
		}
	})
}

// TestEngineSignalsRecheckedAfterReload: a reload that drops the users:
// entry naming carol ends the call her Zoom presence started.
func TestEngineSignalsRecheckedAfterReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, signalConfig(), zoomFeed(time.Now(), "m", 10*minute, time.Hour), nil, nil)
		h.until(120 * minute)
		h.presenceAt(carol, signals.ZoomOnPhoneCall, 120*minute)
		h.until(130 * minute)
		cfg := signalConfig()
		cfg.Users = nil
		h.reload(cfg)
		h.until(3 * time.Hour)
		h.stop()
		h.wantAnyOrder("10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
			"2h0m0s set carol@contoso.com InACall 4h0m0s", "2h10m0s clear carol@contoso.com")
	})
}

// TestEngineTrust: a guest's join (no participant.id) typing a covered
// colleague's address changes nothing; the same address on the meeting's
// own calendar occurrence still acts.
func TestEngineTrust(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, signalConfig(), zoomFeed(time.Now(), "m", 10*minute, time.Hour), nil, nil)
		send := func(event, meeting, email string) string {
			t.Helper()
			res, err := h.eng.Signal(context.Background(), Signal{Vendor: "zoom", Event: event, Meeting: meeting, Email: email, Unverified: true, At: time.Now(), Received: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			return res
		}
		h.until(30 * minute)
		if res := send(state.SignalLeft, zoomKey, "bob@contoso.com"); res != signals.Applied {
			t.Errorf("an unverified left of bob's own occurrence = %q; want applied", res)
		}
		h.until(2 * time.Hour)
		if res := send(state.SignalJoined, "zoom:55555555555", carol); res != signals.Ignored {
			t.Errorf("a guest's join as carol = %q; want ignored", res)
		}
		h.until(3 * time.Hour)
		h.stop()
		h.wantAnyOrder("10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
			"30m0s clear bob@contoso.com")
	})
}
