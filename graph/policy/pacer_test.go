package policy

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestPacerNeverExceedsTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewPacer(Rate{10, 3 * time.Second})
		begin := time.Now()
		var sent []time.Duration
		for range 35 {
			if err := l.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, time.Since(begin))
		}
		// Not slower than allowed: 10 at once, then 10 more every 3 s.
		if got, want := sent[34], 9*time.Second; got != want {
			t.Errorf("35th call sent at %v; want %v", got, want)
		}
		// Never above: any 10 consecutive calls later than the first 10 span a full window.
		for i := 10; i < len(sent); i++ {
			if d := sent[i] - sent[i-10]; d < 3*time.Second {
				t.Errorf("calls %d and %d are %v apart; want >= 3s", i-10, i, d)
			}
		}
	})
}

// TestPacerPause: a 429 pauses every caller for its Retry-After, limited
// or not; a shorter pause does not cut a longer one short.
func TestPacerPause(t *testing.T) {
	for _, l := range []*Pacer{NewPacer(Rate{10, 3 * time.Second}), NewPacer(Rate{})} {
		synctest.Test(t, func(t *testing.T) {
			begin := time.Now()
			l.Pause(2 * time.Second)
			l.Pause(time.Second)
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					if err := l.Wait(context.Background()); err != nil {
						t.Error(err)
					}
					if d := time.Since(begin); d != 2*time.Second {
						t.Errorf("call sent %v after the pause began; want 2s", d)
					}
				})
			}
			wg.Wait()
			ctx, cancel := context.WithCancel(context.Background())
			l.Pause(time.Hour)
			cancel()
			if err := l.Wait(ctx); err == nil {
				t.Error("Wait with a cancelled context during a pause = nil; want an error")
			}
		})
	}
}
