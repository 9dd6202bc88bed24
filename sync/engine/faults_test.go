package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/mem"
	"github.com/calpresence/calpresence/sync/plan"
)

func TestEngineRetriesAClearUntilItIsSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		failures := 0
		graph := &testutil.Presence{Begin: begin, Fail: func(op, user string) error {
			if op == "clear" && failures < 3 {
				failures++
				return &presence.Error{Op: "clearPresence", User: user, Status: 429, Kind: presence.Retry, RetryAfter: 30 * time.Second}
			}
			return nil
		}}
		h := startHarness(t, testConfig(), ics(begin, "m", 10*time.Minute, 3*time.Minute), nil, graph)
		h.until(time.Hour)
		h.stop()
		// Three throttled clears at 13m, 13m30s, 14m; the fourth goes through.
		h.want("10m0s set alice@contoso.com InAConferenceCall 5m0s", "14m30s clear alice@contoso.com")
		if s, _ := h.store.Sessions(t.Context()); len(s) != 0 {
			t.Errorf("sessions after the clear = %v; want none", s)
		}
	})
}

func TestEnginePermanentErrorIsNotRetriedInALoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		var mu sync.Mutex
		attempts := 0
		graph := &testutil.Presence{Begin: begin, Fail: func(op, user string) error {
			mu.Lock()
			defer mu.Unlock()
			if op == "set" && attempts == 0 {
				attempts++
				return &presence.Error{Op: "setPresence", User: user, Status: 400, Kind: presence.Permanent, Message: "invalid activity"}
			}
			return nil
		}}
		h := startHarness(t, testConfig(), ics(begin, "a", 10*time.Minute, 30*time.Minute, "b", time.Hour, 30*time.Minute), nil, graph)
		h.until(2 * time.Hour)
		h.stop()
		// The refused set is not repeated for its span; the next span is set.
		h.want("1h0m0s set alice@contoso.com InAConferenceCall 30m0s")
		if attempts != 1 {
			t.Errorf("refused set attempted %d times; want 1", attempts)
		}
	})
}

func TestEngineUnknownUserIsSkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		graph := &testutil.Presence{Begin: begin, ResolveErr: func(a string) error {
			if strings.HasPrefix(a, "ghost") {
				return &presence.Error{Op: "resolveUser", User: a, Status: 404, Kind: presence.NotFound}
			}
			return nil
		}}
		cfg := testConfig()
		cfg.Sources[0].Users = []string{alice, "ghost@contoso.com"}
		h := startHarness(t, cfg, ics(begin, "a", 10*time.Minute, 30*time.Minute, "b", time.Hour, 30*time.Minute), nil, graph)
		h.until(90 * time.Minute)
		h.stop()
		h.want("10m0s set alice@contoso.com InAConferenceCall 30m0s", "1h0m0s set alice@contoso.com InAConferenceCall 30m0s")
		// Looked up when the feed was first read, then not again before
		// identity.UnknownUserRecheck is over (at 1h).
		if n := graph.LookupsOf("ghost@contoso.com"); n != 2 {
			t.Errorf("unknown address looked up %d times in 90m; want 2", n)
		}
		if n := graph.LookupsOf(alice); n != 1 {
			t.Errorf("known address looked up %d times; want 1 (kept)", n)
		}
		// Reported once (not at the recheck), and visible.
		if n := strings.Count(h.logs.String(), "address names no Entra user"); n != 1 {
			t.Errorf("unknown address reported %d times; want 1", n)
		}
		if got := h.eng.Unresolved(); len(got) != 1 || got[0].Address != "ghost@contoso.com" || got[0].Reason != "unknown" {
			t.Errorf("Unresolved() = %v; want ghost@contoso.com unknown", got)
		}
	})
}

// TestEngineRefusedClearIsRetriedUntilTheLeaseRunsOut: a clear answered 403
// (consent being changed) is neither dropped nor undone: it is retried with
// back-off, with the id the session recorded (no lookup), until the lease
// it clears has run out; then the record goes.
func TestEngineRefusedClearIsRetriedUntilTheLeaseRunsOut(t *testing.T) {
	tests := []struct {
		name     string
		refusals int // -1: always
		want     []string
	}{
		{"accepted after two refusals", 2, []string{"10m0s set alice@contoso.com InAConferenceCall 5m0s", "clear alice@contoso.com"}},
		{"refused until the lease ends", -1, []string{"10m0s set alice@contoso.com InAConferenceCall 5m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				begin := time.Now()
				var (
					mu       sync.Mutex
					attempts []time.Duration
				)
				graph := &testutil.Presence{Begin: begin, Fail: func(op, user string) error {
					if op != "clear" {
						return nil
					}
					mu.Lock()
					defer mu.Unlock()
					attempts = append(attempts, time.Since(begin))
					if tt.refusals < 0 || len(attempts) <= tt.refusals {
						return &presence.Error{Op: policy.OpClearPresence, User: user, Status: 403, Kind: policy.Classify(policy.OpClearPresence, 403), Message: "Forbidden"}
					}
					return nil
				}}
				// 10m-13m: Graph's minimum lease keeps the session to 15m.
				h := startHarness(t, testConfig(), ics(begin, "m", 10*time.Minute, 3*time.Minute), nil, graph)
				h.until(13*time.Minute + 500*time.Millisecond)
				if got := gaugeValue(h.metrics.ClearsPending); got != 1 {
					t.Errorf("calpresence_clears_pending after the first refusal = %v; want 1", got)
				}
				h.until(time.Hour)
				h.stop()

				got := h.graph.Got()
				for i := range got { // the accepted clear's time depends on the jitter
					if strings.Contains(got[i], " clear ") {
						got[i] = got[i][strings.Index(got[i], " ")+1:]
					}
				}
				if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("Graph calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
				}
				mu.Lock()
				defer mu.Unlock()
				if tt.refusals < 0 {
					if len(attempts) < 4 {
						t.Errorf("refused clear tried %d times; want it retried until the lease ends", len(attempts))
					}
					if last := attempts[len(attempts)-1]; last > 15*time.Minute {
						t.Errorf("clear retried at %v, after the lease ran out (15m)", last)
					}
				} else if len(attempts) != tt.refusals+1 {
					t.Errorf("clear tried %d times; want %d", len(attempts), tt.refusals+1)
				}
				if s, _ := h.store.Sessions(t.Context()); len(s) != 0 {
					t.Errorf("sessions at the end = %v; want none", s)
				}
				if got := gaugeValue(h.metrics.ClearsPending); got != 0 {
					t.Errorf("calpresence_clears_pending at the end = %v; want 0", got)
				}
				if n := graph.LookupsOf(alice); n != 1 {
					t.Errorf("alice looked up %d times; want 1 (a clear uses the recorded id)", n)
				}
			})
		})
	}
}

// refusingScheduler is gocron refusing every one-time job, as it does when
// the start time has passed by the time it checks.
type refusingScheduler struct{ gocron.Scheduler }

func (s refusingScheduler) NewJob(d gocron.JobDefinition, t gocron.Task, o ...gocron.JobOption) (gocron.Job, error) {
	if strings.Contains(fmt.Sprintf("%T", d), "oneTime") {
		return nil, gocron.ErrOneTimeJobStartDateTimePast
	}
	return s.Scheduler.NewJob(d, t, o...)
}

// TestEngineBoundaryFiresWhenGocronRefusesTheWake: the wake for every
// boundary is refused; the boundaries still fire on time.
func TestEngineBoundaryFiresWhenGocronRefusesTheWake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{"zoom": ics(begin, "m", 10*time.Minute+30*time.Second, 3*time.Minute)}, errs: map[string]error{}},
			graph: &testutil.Presence{Begin: begin}, store: mem.New(), begin: begin, metrics: NewMetrics(nil)}
		h.startWith(testConfig(), nil, func(e *Engine) {
			e.wrapScheduler = func(s gocron.Scheduler) gocron.Scheduler { return refusingScheduler{s} }
		})
		h.until(time.Hour)
		h.stop()
		// On the boundary, not at the next safety reconcile (11m, 14m).
		h.want("10m30s set alice@contoso.com InAConferenceCall 5m0s", "13m30s clear alice@contoso.com")
		if !strings.Contains(h.logs.String(), "gocron refused the boundary job") {
			t.Error("the refusal was not logged")
		}
	})
}

// failingDeletes is a store whose session deletes fail (a full disk).
type failingDeletes struct {
	*mem.Store
	mu      sync.Mutex
	deletes int
}

func (s *failingDeletes) DeleteSession(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletes++
	return errors.New("write state.db: no space left on device")
}

// TestEngineFailingStateWriteBacksOff: forgetting a session whose lease
// lapsed with its span is a write only; when it fails, it is logged and
// retried with back-off, not in a hot loop.
func TestEngineFailingStateWriteBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		store := &failingDeletes{Store: mem.New()}
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{"zoom": ics(begin, "m", 10*time.Minute, 30*time.Minute)}, errs: map[string]error{}},
			graph: &testutil.Presence{Begin: begin}, store: store.Store, begin: begin, metrics: NewMetrics(nil)}
		h.startWith(testConfig(), func(o *Options) { o.Store = store }, nil)
		h.until(time.Hour) // the span ends at 40m: 20 minutes of failing deletes
		h.stop()
		h.want("10m0s set alice@contoso.com InAConferenceCall 30m0s")
		store.mu.Lock()
		n := store.deletes
		store.mu.Unlock()
		// Back-off 1s, 2s, 4s … 5m: about a dozen in 20 minutes.
		if n < 3 || n > 30 {
			t.Errorf("failing delete tried %d times in 20 minutes; want a back-off (3..30)", n)
		}
		if !strings.Contains(h.logs.String(), "no space left on device") {
			t.Error("the failing write was not logged")
		}
	})
}

// TestFencedRecordHoldsNobodyBack: a record the store refused because
// this replica's term as leader is over (state.ErrFenced) is not a failure
// to retry: the engine is being stopped and the next leader makes the
// call. Another failed record is held back as before.
func TestFencedRecordHoldsNobodyBack(t *testing.T) {
	x := newExecutor(&testutil.Presence{}, mem.New(), nil, nil, slog.New(slog.DiscardHandler), NewMetrics(nil))
	a := plan.Action{Op: plan.OpSet, User: "alice"}
	x.fail(t.Context(), a, fmt.Errorf("record intent: leader epoch 1 is over: epoch 2 leads now: %w", state.ErrFenced), x.logFor(a))
	if held := x.heldAt(time.Now()); len(held) != 0 {
		t.Errorf("held after a fenced record: %v; want nobody", held)
	}
	x.fail(t.Context(), a, errors.New("record intent: no space left on device"), x.logFor(a))
	if held := x.heldAt(time.Now()); len(held) != 1 {
		t.Errorf("held after a failed record: %v; want alice, backing off", held)
	}
}

// hangingPresence never answers a set: a Graph that stopped responding.
type hangingPresence struct{ *testutil.Presence }

func (p hangingPresence) SetPresence(ctx context.Context, id, availability, activity string, exp time.Duration) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestEngineShutdownIsBounded: a call in flight at shutdown gets the grace
// period (server.shutdown_timeout), not the Graph client's own retries;
// Run then returns, and the call stays recorded as uncertain for the next
// start.
func TestEngineShutdownIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		graph := &testutil.Presence{Begin: begin}
		store := mem.New()
		cfg := testConfig()
		cfg.Server.ShutdownTimeout = 20 * time.Second
		eng, err := New(t.Context(), Options{Config: cfg, Presence: hangingPresence{graph}, Store: store,
			Fetcher: &fakeFeeds{bodies: map[string]string{"zoom": ics(begin, "m", 10*time.Minute, 30*time.Minute)}, errs: map[string]error{}}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- eng.Run(ctx) }()
		time.Sleep(11 * time.Minute) // the set went out at 10m and hangs
		cancel()
		stopped := time.Now()
		if err := <-done; err != nil {
			t.Errorf("Run = %v; want nil", err)
		}
		if d := time.Since(stopped); d > 21*time.Second {
			t.Errorf("Run returned %v after cancel; want within the 20s grace", d)
		}
		s, _ := store.Sessions(ctx)
		if s[alice].Pending != state.PendingSet {
			t.Errorf("session after an interrupted set = %+v; want it recorded as uncertain (pending set)", s[alice])
		}
	})
}

// TestEngineStartsBeforeEnds: at one instant two people go busy and two go
// free; with one call at a time, the starts go first, and the clears
// right after (they are not starved).
func TestEngineStartsBeforeEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		cfg := testConfig()
		cfg.Graph.MaxConcurrency = 1
		cfg.Sources = nil
		feeds := &fakeFeeds{bodies: map[string]string{}, errs: map[string]error{}}
		for _, x := range []struct {
			user       string
			start, dur time.Duration
		}{
			{"a1@contoso.com", 7 * time.Minute, 3 * time.Minute},   // ends at 10m, lease to 12m: a clear
			{"a2@contoso.com", 7 * time.Minute, 3 * time.Minute},   // likewise
			{"z1@contoso.com", 10 * time.Minute, 30 * time.Minute}, // starts at 10m
			{"z2@contoso.com", 10 * time.Minute, 30 * time.Minute},
		} {
			name := x.user[:2]
			cfg.Sources = append(cfg.Sources, testConfig().Sources[0])
			src := &cfg.Sources[len(cfg.Sources)-1]
			src.Name, src.Users = name, []string{x.user}
			feeds.bodies[name] = ics(begin, name, x.start, x.dur)
		}
		h := &harness{t: t, feeds: feeds, graph: &testutil.Presence{Begin: begin}, store: mem.New(), begin: begin, metrics: NewMetrics(nil)}
		h.start(cfg)
		h.until(9 * time.Minute)
		h.graph.Reset()
		h.until(20 * time.Minute)
		h.stop()
		h.want(
			"10m0s set z1@contoso.com InAConferenceCall 30m0s",
			"10m0s set z2@contoso.com InAConferenceCall 30m0s",
			"10m0s clear a1@contoso.com",
			"10m0s clear a2@contoso.com")
	})
}

// intentCheckingPresence fails the test's check for a set whose intent
// the store does not hold when the call is made.
type intentCheckingPresence struct {
	*testutil.Presence
	store   *mem.Store
	mu      sync.Mutex
	without []string // people called before their intent was recorded
}

func (p *intentCheckingPresence) SetPresence(ctx context.Context, id, availability, activity string, exp time.Duration) error {
	ss, err := p.store.Sessions(ctx)
	if s, ok := ss[id]; err != nil || !ok || s.Pending != plan.OpSet {
		p.mu.Lock()
		p.without = append(p.without, id)
		p.mu.Unlock()
	}
	return p.Presence.SetPresence(ctx, id, availability, activity, exp)
}

// failingPutsAfter is a store whose batch writes fail after the first n
// (a disk that fills during a burst).
type failingPutsAfter struct {
	*mem.Store
	mu      sync.Mutex
	n, puts int
}

func (s *failingPutsAfter) PutSessions(ctx context.Context, ss []state.Session) error {
	s.mu.Lock()
	s.puts++
	fail := s.puts > s.n
	s.mu.Unlock()
	if fail {
		return errors.New("write state.db: no space left on device")
	}
	return s.Store.PutSessions(ctx, ss)
}

// TestBurstRecordsEachIntentBeforeItsCall: the intents of a burst are
// written in batches ahead of the calls, so that the first call does not
// wait for the last record; still no call is made before its own intent
// is recorded, and when a batch cannot be written none of its calls, nor
// any after it, is made.
func TestBurstRecordsEachIntentBeforeItsCall(t *testing.T) {
	actions := func(n int) []plan.Action {
		as := make([]plan.Action, n)
		for i := range as {
			as[i] = plan.Action{Op: plan.OpSet, User: fmt.Sprintf("u%04d", i), Pair: presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInAConferenceCall},
				Expiration: time.Hour, Span: plan.Span{Start: time.Now(), End: time.Now().Add(time.Hour)}}
		}
		return as
	}
	store := mem.New()
	p := &intentCheckingPresence{Presence: &testutil.Presence{}, store: store}
	x := newExecutor(p, store, nil, policy.NewGate(8, policy.Rate{}), slog.New(slog.DiscardHandler), NewMetrics(nil))
	for i, r := range x.run(t.Context(), actions(1000)) {
		if r.Err != nil {
			t.Fatalf("action %d: %v", i, r.Err)
		}
	}
	if len(p.without) > 0 {
		t.Errorf("%d sets made before their intent was recorded (first %s)", len(p.without), p.without[0])
	}
	if n := len(p.Presence.Calls()); n != 1000 {
		t.Errorf("%d sets made; want 1000", n)
	}

	// The second batch (intentBatch from the first) cannot be written.
	failing := &failingPutsAfter{Store: mem.New(), n: 1}
	p = &intentCheckingPresence{Presence: &testutil.Presence{}, store: failing.Store}
	x = newExecutor(p, failing, nil, policy.NewGate(8, policy.Rate{}), slog.New(slog.DiscardHandler), NewMetrics(nil))
	results := x.run(t.Context(), actions(1000))
	for i, r := range results {
		if wantErr := i >= intentBatch; (r.Err != nil) != wantErr || wantErr && !strings.Contains(r.Err.Error(), "record intent") {
			t.Fatalf("action %d: err %v; want a failed record intent from action %d on", i, r.Err, intentBatch)
		}
	}
	if n := len(p.Presence.Calls()); n != intentBatch || len(p.without) > 0 {
		t.Errorf("%d sets made (%d without their intent); want the first batch's %d, each with its intent", n, len(p.without), intentBatch)
	}
	if held := x.heldAt(time.Now()); len(held) != 1000-intentBatch {
		t.Errorf("%d people held back after the failed records; want %d", len(held), 1000-intentBatch)
	}
}
