package engine

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/state/mem"
)

// TestGateSizeFollowsLatency: the calls in flight are what the allowed rate
// needs at the latency Graph shows, within max_concurrency.
func TestGateSizeFollowsLatency(t *testing.T) {
	g := newGate(100, 10000, 30*time.Second) // 333/s
	if _, size := g.inFlight(); size != 100 {
		t.Errorf("size before any call = %d; want the ceiling 100 (333/s × 200ms × 1.5 = 101)", size)
	}
	// Graph answers in 20 ms: 333/s needs ~7 in flight; with headroom 11.
	for range 100 {
		if err := g.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		g.release(20 * time.Millisecond)
	}
	if _, size := g.inFlight(); size < 9 || size > 13 {
		t.Errorf("size at 20ms latency = %d; want about 11", size)
	}
	// The operator's ceiling wins.
	if _, size := newGate(4, 10000, 30*time.Second).inFlight(); size != 4 {
		t.Errorf("size with max_concurrency 4 = %d; want 4", size)
	}
	// No rate limit: the ceiling.
	if _, size := newGate(16, 0, 0).inFlight(); size != 16 {
		t.Errorf("size without a rate limit = %d; want 16", size)
	}
}

// TestGateBlocksAtItsSize: a call beyond the size waits for one to end.
func TestGateBlocksAtItsSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(2, 0, 0)
		for range 2 {
			if err := g.acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := g.acquire(context.Background()); err != nil {
				t.Error(err)
			}
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("a third call started with two in flight and a size of 2")
		default:
		}
		g.release(time.Millisecond)
		<-done
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := g.acquire(ctx); err == nil {
			t.Error("acquire with a cancelled context and a full gate = nil; want an error")
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
