package policy

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestGateSizeFollowsLatency: the calls in flight are what the allowed rate
// needs at the latency Graph shows, within max_concurrency.
func TestGateSizeFollowsLatency(t *testing.T) {
	g := NewGate(100, Rate{10000, 30 * time.Second}) // 333/s
	if _, size := g.InFlight(); size != 100 {
		t.Errorf("size before any call = %d; want the ceiling 100 (333/s × 200ms × 1.5 = 101)", size)
	}
	// Graph answers in 20 ms: 333/s needs ~7 in flight; with headroom 11.
	for range 100 {
		if err := g.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		g.Release(20 * time.Millisecond)
	}
	if _, size := g.InFlight(); size < 9 || size > 13 {
		t.Errorf("size at 20ms latency = %d; want about 11", size)
	}
	// The operator's ceiling wins.
	if _, size := NewGate(4, Rate{10000, 30 * time.Second}).InFlight(); size != 4 {
		t.Errorf("size with max_concurrency 4 = %d; want 4", size)
	}
	// No rate limit: the ceiling.
	if _, size := NewGate(16, Rate{}).InFlight(); size != 16 {
		t.Errorf("size without a rate limit = %d; want 16", size)
	}
}

// TestGateBlocksAtItsSize: a call beyond the size waits for one to end.
func TestGateBlocksAtItsSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGate(2, Rate{})
		for range 2 {
			if err := g.Acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := g.Acquire(context.Background()); err != nil {
				t.Error(err)
			}
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("a third call started with two in flight and a size of 2")
		default:
		}
		g.Release(time.Millisecond)
		<-done
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := g.Acquire(ctx); err == nil {
			t.Error("acquire with a cancelled context and a full gate = nil; want an error")
		}
	})
}
