package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph"
	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
)

// warmClient builds a Graph client for g and makes one call with it, so
// that the token is cached and a connection is open, as in a daemon that
// has been running for a while.
func warmClient(tb testing.TB, g *graphtest.Server, o options) *graph.Client {
	tb.Helper()
	c := newClient(tb, newConfig(tb, g, o), nil, o.graphOpts...)
	// A clear of a session nobody holds: 404, which warms everything.
	if err := c.ClearPresence(context.Background(), userID(999999)); err == nil {
		tb.Fatal("warm-up clearPresence succeeded; want 404")
	}
	return c
}

// setCalls returns the successful setPresence calls the fake recorded.
func setCalls(g *graphtest.Server) []graphtest.Call {
	var out []graphtest.Call
	for _, c := range g.CallsOp(graphtest.OpSetPresence) {
		if c.Status == http.StatusOK {
			out = append(out, c)
		}
	}
	return out
}

// waitSets waits until the fake has recorded n successful setPresence
// calls and returns them.
func waitSets(tb testing.TB, g *graphtest.Server, n int, within time.Duration) []graphtest.Call {
	tb.Helper()
	var calls []graphtest.Call
	if !testutil.WaitUntil(within, func() bool { calls = setCalls(g); return len(calls) >= n }) {
		tb.Fatalf("saw %d successful setPresence calls after %v; want %d", len(calls), within, n)
	}
	return calls
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted
// durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// maxInWindow is the largest number of times within any half-open window
// [t, t+w) — a sliding window, as Graph states its limit.
func maxInWindow(times []time.Time, w time.Duration) int {
	ts := slices.Clone(times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// BenchmarkBoundaryLag measures the boundary lag — from a meeting's start
// to the fake Graph receiving setPresence — when N users' meetings start
// in the same second (BENCHMARKS.md: p99 ≤ 1 s). Each iteration
// runs a fresh engine (and state) with a warm Graph client, a meeting
// starting 2–3 s ahead, and waits for the N calls. It reports the lag's
// min, p50, p99 and max over all calls of all iterations.
//
// conc is graph.max_concurrency. store=mem is engine.Store; store=bolt is
// the daemon's bbolt state file. pool=64 replaces the Graph client's
// transport with one that keeps 64 idle connections per host instead of
// net/http's default 2 (see BENCHMARKS.md: with HTTP/1.1, as the fake and
// many proxies speak, the default makes most calls of a burst open a new
// TLS connection).
//
// The fake Graph server runs in the same process, so the client and the
// server share the machine's cores.
func BenchmarkBoundaryLag(b *testing.B) {
	type variant struct {
		users, conc int
		store       string
		pool        bool
	}
	var vs []variant
	for _, store := range []string{"mem", "bolt"} {
		vs = append(vs, variant{1, 4, store, false})
	}
	for _, n := range []int{100, 2000} {
		for _, conc := range []int{4, 16} {
			for _, store := range []string{"mem", "bolt"} {
				vs = append(vs, variant{n, conc, store, false})
			}
		}
	}
	for _, store := range []string{"mem", "bolt"} {
		vs = append(vs, variant{2000, 16, store, true})
	}
	for _, v := range vs {
		name := fmt.Sprintf("users=%d/conc=%d/store=%s", v.users, v.conc, v.store)
		if v.pool {
			name += "/pool=64"
		}
		b.Run(name, func(b *testing.B) {
			g := graphtest.NewServer(b)
			o := options{concurrency: v.conc, bolt: v.store == "bolt", quiet: true}
			if v.pool {
				o.graphOpts = []graph.Option{graph.WithTransport(pooledTransport(g, 64))}
			}
			benchBoundaryLagOn(b, g, v.users, o)
		})
	}
}

// pooledTransport is a transport trusting g that keeps idle connections
// per host for reuse.
func pooledTransport(g *graphtest.Server, idle int) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = g.TLSConfig()
	tr.MaxIdleConnsPerHost = idle
	return tr
}

func benchBoundaryLag(b *testing.B, n int, o options) {
	benchBoundaryLagOn(b, graphtest.NewServer(b), n, o)
}

func benchBoundaryLagOn(b *testing.B, g *graphtest.Server, n int, o options) {
	o.users = userIDs(n)
	client := warmClient(b, g, o)
	var lags []time.Duration
	for b.Loop() {
		g.Reset()
		begin := soon(2 * time.Second)
		e := start(b, g, ics(event{"burst", begin, begin.Add(time.Hour)}), client, o)
		calls := waitSets(b, g, n, time.Until(begin)+2*time.Minute)
		e.stop()
		for _, c := range calls {
			lags = append(lags, c.Time.Sub(begin))
		}
	}
	slices.Sort(lags)
	b.ReportMetric(ms(lags[0]), "min-ms")
	b.ReportMetric(ms(percentile(lags, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lags, 99)), "p99-ms")
	b.ReportMetric(ms(lags[len(lags)-1]), "max-ms")
	b.ReportMetric(0, "ns/op") // an iteration is mostly waiting for the start
}

// BenchmarkBurstRate sends 2,000 simultaneous starts against a fake that
// allows a scaled-down Graph rate (200 per 1 s instead of 10,000 per 30 s),
// with the same limit in graph.rate_limit/rate_window. The calls must go
// out at that rate — not slower: the last arrives about
// (N/limit − 1) × window after the first — and never above it: no 429
// from the fake's limiter, and at most limit calls in any sliding window
// of the recorded arrival times.
func BenchmarkBurstRate(b *testing.B) {
	const n, limit, window = 2000, 200, time.Second
	for _, conc := range []int{16} {
		b.Run(fmt.Sprintf("users=%d/limit=%d/conc=%d", n, limit, conc), func(b *testing.B) {
			o := options{users: userIDs(n), concurrency: conc, rateLimit: limit, rateWindow: window, quiet: true}
			g := graphtest.NewServer(b)
			client := warmClient(b, g, o)
			var spans []time.Duration
			worst, throttled := 0, 0
			for b.Loop() {
				g.Reset()
				g.SetRateLimit(limit, window)
				begin := soon(2 * time.Second)
				e := start(b, g, ics(event{"burst", begin, begin.Add(time.Hour)}), client, o)
				calls := waitSets(b, g, n, time.Until(begin)+2*time.Minute)
				e.stop()
				var times []time.Time
				for _, c := range g.CallsOp(graphtest.OpSetPresence) {
					times = append(times, c.Time)
					if c.Fault == "rate_limit" {
						throttled++
					}
				}
				worst = max(worst, maxInWindow(times, window))
				spans = append(spans, calls[len(calls)-1].Time.Sub(calls[0].Time))
			}
			ideal := time.Duration(n/limit-1) * window
			total := slices.Max(spans)
			b.ReportMetric(total.Seconds(), "total-s")
			b.ReportMetric(ideal.Seconds(), "ideal-s")
			// Achieved rate over the burst: the last window's calls count
			// as sent within one more window.
			b.ReportMetric(float64(n)/(total+window).Seconds(), "calls/s")
			b.ReportMetric(float64(limit)/window.Seconds(), "allowed/s")
			b.ReportMetric(float64(worst), "max-per-window")
			b.ReportMetric(float64(throttled), "429s")
			b.ReportMetric(0, "ns/op")
			// Reported, not failed, so that the figures print; the test
			// TestBurstAtTheRateLimit asserts the same at a small scale.
			if throttled > 0 || worst > limit {
				b.Logf("ABOVE THE RATE: %d calls in one %v window (limit %d), %d answered 429", worst, window, limit, throttled)
			}
			if total > ideal+window/2 {
				b.Logf("SLOWER THAN THE RATE: the burst took %v; want about %v", total, ideal)
			}
		})
	}
}

// BenchmarkBurstAtGraphLatency is the throughput issue's measure: N
// meetings start in the same second against a fake Graph that answers
// every request (token, lookup, presence) in 150 ms, as the real one does,
// and enforces Graph's presence limit (10,000 per 30 s per app). The
// daemon's defaults apply (max_concurrency 100, rate_limit 10,000/30s).
// Targets: 300 starts → p99 ≤ 1.5 s; 2,000 → p99 ≤ 2,000/333 s + 1 s,
// never above the limit in any 30 s window of arrivals, retries
// included. throttle=10% answers one person in ten 429 Retry-After: 2
// first: nothing may be dropped, and the window still holds.
//
// It reports the lag (meeting start → the successful setPresence reaching
// the fake) at p50/p99/max, the most presence requests in any 30 s window,
// the 429s the fake's own limiter gave, and the people left without a
// session (dropped).
func BenchmarkBurstAtGraphLatency(b *testing.B) {
	const latency, limit, window = 150 * time.Millisecond, 10000, 30 * time.Second
	for _, v := range []struct {
		users    int
		throttle int // one person in throttle gets a 429 first; 0: none
	}{{300, 0}, {2000, 0}, {2000, 10}} {
		name := fmt.Sprintf("users=%d/latency=150ms", v.users)
		if v.throttle > 0 {
			name += fmt.Sprintf("/throttle=%d%%", 100/v.throttle)
		}
		b.Run(name, func(b *testing.B) {
			ids := userIDs(v.users)
			o := options{users: ids, quiet: true}
			g := graphtest.NewServer(b)
			g.SetLatency(latency)
			client := warmClient(b, g, o)
			var lags []time.Duration
			worst, limited, dropped, throttled := 0, 0, 0, 0
			for b.Loop() {
				g.Reset()
				g.SetLatency(latency)
				g.SetRateLimit(limit, window)
				if v.throttle > 0 {
					for i, id := range ids {
						if i%v.throttle == 0 {
							g.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, User: id, Status: http.StatusTooManyRequests,
								Header: http.Header{"Retry-After": {"2"}}})
						}
					}
				}
				begin := soon(3 * time.Second)
				e := start(b, g, ics(event{"burst", begin, begin.Add(time.Hour)}), client, o)
				calls := waitSets(b, g, v.users, time.Until(begin)+2*time.Minute)
				e.stop()
				var times []time.Time
				for _, c := range g.PresenceCalls() {
					times = append(times, c.Time)
					switch c.Fault {
					case "rate_limit":
						limited++
					case "":
					default:
						throttled++
					}
				}
				worst = max(worst, maxInWindow(times, window))
				for _, c := range calls {
					lags = append(lags, c.Time.Sub(begin))
				}
				for _, id := range ids {
					if _, ok := g.Session(id); !ok {
						dropped++
					}
				}
			}
			slices.Sort(lags)
			b.ReportMetric(ms(percentile(lags, 50)), "p50-ms")
			b.ReportMetric(ms(percentile(lags, 99)), "p99-ms")
			b.ReportMetric(ms(lags[len(lags)-1]), "max-ms")
			b.ReportMetric(float64(worst), "max-per-30s")
			b.ReportMetric(float64(limited), "rate-429s")
			b.ReportMetric(float64(throttled), "injected-429s")
			b.ReportMetric(float64(dropped), "dropped")
			b.ReportMetric(0, "ns/op")
		})
	}
}
