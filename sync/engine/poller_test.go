package engine

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/state/mem"
)

// slowFeeds answers every fetch after delay with "not modified" (an empty
// feed the first time), recording when each fetch began and how many were
// in flight at most.
type slowFeeds struct {
	delay time.Duration

	mu       sync.Mutex
	inFlight int
	maxIn    int
	at       map[string][]time.Time
}

func (s *slowFeeds) Fetch(ctx context.Context, req sources.FetchRequest) (sources.FetchResult, error) {
	s.mu.Lock()
	s.inFlight++
	s.maxIn = max(s.maxIn, s.inFlight)
	s.at[req.Name] = append(s.at[req.Name], time.Now())
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return sources.FetchResult{}, ctx.Err()
	}
	body := []byte(ics(time.Now()))
	if req.PrevHash != ([32]byte{}) {
		return sources.FetchResult{NotModified: true, Hash: req.PrevHash}, nil
	}
	return sources.FetchResult{Body: body, Hash: [32]byte{1}, Status: 200}, nil
}

func TestSteadyPollsSpreadAndBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, limit = 600, 4
		cfg := testConfig()
		cfg.Schedule.FetchConcurrency = limit
		cfg.Sources = nil
		for i := range n {
			name := fmt.Sprintf("feed-%03d", i)
			cfg.Sources = append(cfg.Sources, config.Source{Name: name, URL: "https://example.test/" + name,
				Users: []string{alice}, PollInterval: time.Minute})
		}
		feeds := &slowFeeds{delay: 10 * time.Millisecond, at: map[string][]time.Time{}}
		eng, err := New(t.Context(), Options{Config: cfg, Presence: &testutil.Presence{}, Store: mem.New(), Fetcher: feeds})
		if err != nil {
			t.Fatal(err)
		}
		before := runtime.NumGoroutine()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- eng.Run(ctx) }()
		// The first round (600 fetches, 4 at a time, 10 ms each) is over
		// long before 70 s; measure three intervals from then on.
		begin := time.Now()
		time.Sleep(70*time.Second + 500*time.Millisecond)
		synctest.Wait()
		feeds.mu.Lock()
		from := time.Now()
		clear(feeds.at)
		feeds.mu.Unlock()

		time.Sleep(30 * time.Second)
		synctest.Wait()
		if g := runtime.NumGoroutine() - before; g > 50 {
			t.Errorf("%d goroutines while polling %d sources; want a few, not one per source", g, n)
		}
		time.Sleep(time.Until(from.Add(3 * time.Minute)))
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		feeds.mu.Lock()
		defer feeds.mu.Unlock()
		if feeds.maxIn > limit {
			t.Errorf("%d fetches in flight at most; want at most fetch_concurrency = %d", feeds.maxIn, limit)
		}
		// Each source is read once a minute, and the reads are spread:
		// 600 a minute is 10 a second.
		perSecond := map[int64]int{}
		for name, times := range feeds.at {
			if len(times) != 3 {
				t.Errorf("%s polled %d times in 3 minutes; want 3", name, len(times))
			}
			for i := 1; i < len(times); i++ {
				// The sources due in one tick start within its first
				// few tens of milliseconds.
				if d := times[i].Sub(times[i-1]); d < time.Minute-pollTick/10 || d > time.Minute+pollTick/10 {
					t.Errorf("%s polled %v after the previous poll; want 1m0s", name, d)
				}
			}
			for _, at := range times {
				perSecond[int64(at.Sub(begin)/time.Second)]++
			}
		}
		if len(feeds.at) != n {
			t.Errorf("%d sources polled in 3 minutes; want %d", len(feeds.at), n)
		}
		for sec, c := range perSecond {
			if c > 11 {
				t.Errorf("%d polls began in second %d; want them spread over the interval (10 a second)", c, sec)
			}
		}
	})
}
