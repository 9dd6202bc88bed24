package graphtest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph"
	"github.com/calpresence/calpresence/graph/policy"
)

// BenchmarkPresenceBurstWhilePolled measures the presence calls a second
// that reach the fake, as cmd/calpresence's BenchmarkRestart drives it:
// the Graph client with the daemon's pacer (10,000 per 30 s) and a gate
// of at most 100 calls in flight, 150 ms of latency, and the fake already
// holding recorded (the calls of the benchmark's first run: lookups and
// sets), while a watcher asks watch every 10 ms whether calls are still
// coming, as the restart benchmark does. The calls are fewer than the
// pacer's window, so the gate alone bounds them (~500 a second at 150 ms).
//
//	go test -run '^$' -bench PresenceBurstWhilePolled -benchtime 1x ./graph/graphtest/
func BenchmarkPresenceBurstWhilePolled(b *testing.B) {
	for _, c := range []struct {
		recorded int
		watch    string
	}{
		{0, "none"},
		{150000, "none"},
		{150000, "PresenceCalls"},
		{150000, "CallCount"},
	} {
		b.Run(fmt.Sprintf("recorded=%d/watch=%s", c.recorded, c.watch), func(b *testing.B) {
			for range b.N {
				benchPresenceBurst(b, 5000, c.recorded, c.watch)
			}
		})
	}
}

func benchPresenceBurst(b *testing.B, calls, recorded int, watch string) {
	b.StopTimer()
	ctx := context.Background()
	s := NewServer(b)
	s.mu.Lock()
	for i := range recorded {
		c := Call{Time: time.Now(), Method: http.MethodGet, Path: "/v1.0/users", Op: OpListUsers,
			Query:  url.Values{"$filter": {fmt.Sprintf("userPrincipalName eq 'u%d@contoso.com'", i)}},
			Header: http.Header{"Authorization": {"Bearer x"}, "Client-Request-Id": {"0000"}, "User-Agent": {"calpresence"}},
			User:   fmt.Sprintf("u%d@contoso.com", i), Status: http.StatusOK}
		if i%3 == 2 {
			c.Method, c.Path, c.Op, c.Query = http.MethodPost, "/v1.0/users/x/presence/setPresence", OpSetPresence, nil
			c.Body = []byte(`{"sessionId":"x","availability":"Busy","activity":"InAMeeting","expirationDuration":"PT5M"}`)
		}
		s.calls = append(s.calls, c)
	}
	s.mu.Unlock()
	s.SetLatency(150 * time.Millisecond)
	rate := policy.Rate{N: 10000, Window: 30 * time.Second}
	cfg := s.Config()
	cfg.MaxConcurrency = 100
	client, err := graph.New(ctx, cfg, slog.New(slog.DiscardHandler), graph.WithPacer(policy.NewPacer(rate)))
	if err != nil {
		b.Fatal(err)
	}
	// A first call: the token.
	if err := client.SetPresence(ctx, "warm", "Busy", "InACall", 5*time.Minute); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	stop := make(chan struct{})
	var watched sync.WaitGroup
	if watch != "none" {
		watched.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				switch watch {
				case "PresenceCalls":
					// BenchmarkRestart's setsBy, once per op.
					for range 2 {
						k := 0
						for _, c := range s.PresenceCalls() {
							if !c.Time.Before(t0) {
								k++
							}
						}
					}
				case "CallCount":
					s.CallCount(OpSetPresence, OpClearPresence)
				}
			}
		})
	}
	gate := policy.NewGate(cfg.MaxConcurrency, rate)
	var wg sync.WaitGroup
	b.StartTimer()
	for i := range calls {
		if err := gate.Acquire(ctx); err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			sent := time.Now()
			err := client.SetPresence(ctx, fmt.Sprintf("00000000-0000-4000-8000-%012d", i), "Busy", "InACall", 5*time.Minute)
			gate.Release(time.Since(sent))
			if err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(stop)
	watched.Wait()
	var at []time.Time
	for _, c := range s.PresenceCalls() {
		if !c.Time.Before(t0) {
			at = append(at, c.Time)
		}
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	b.ReportMetric(float64(len(at)-1)/at[len(at)-1].Sub(at[0]).Seconds(), "calls/s")
}
