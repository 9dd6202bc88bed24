package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph"
	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/graph/policy"
)

// BenchmarkReadbackDuringBoundary reads back 10,000 people (one bulk
// read, as the engine's read-back makes it: getPresencesByUserId, 650
// ids a call, the read pacer of 1,500 calls per 30 s) on the daemon's
// Graph client while a 300-person boundary falls in the middle of it,
// against a fake Graph answering every request in 150 ms. Targets: the
// read takes at most 16 calls and 3 s; the boundary keeps its p99 ≤ 1.5 s
// (sets and clears do not wait behind reads).
//
// It reports the read's duration (max over iterations) and calls, and the
// boundary lag (meeting start → setPresence reaching the fake) at p50/p99.
func BenchmarkReadbackDuringBoundary(b *testing.B) {
	const latency, people, starts = 150 * time.Millisecond, 10000, 300
	readIDs := make([]string, people)
	for i := range readIDs {
		readIDs[i] = userID(100000 + i)
	}
	o := options{users: userIDs(starts), quiet: true,
		graphOpts: []graph.Option{graph.WithReadPacer(policy.NewPacer(policy.ReadRate))}}
	g := graphtest.NewServer(b)
	g.SetLatency(latency)
	client := warmClient(b, g, o)
	var lags []time.Duration
	var worstRead time.Duration
	readCalls := 0
	for b.Loop() {
		g.Reset()
		g.SetLatency(latency)
		g.SetRateLimit(10000, 30*time.Second)
		begin := soon(3 * time.Second)
		e := start(b, g, ics(event{"burst", begin, begin.Add(time.Hour)}), client, o)
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(time.Until(begin.Add(-300 * time.Millisecond)))
			before := len(g.CallsOp(graphtest.OpReadPresences))
			t := time.Now()
			got, err := client.ReadPresences(context.Background(), readIDs)
			d := time.Since(t)
			if err != nil || len(got) != people {
				b.Errorf("ReadPresences(%d ids) = %d, %v", people, len(got), err)
			}
			worstRead = max(worstRead, d)
			readCalls = max(readCalls, len(g.CallsOp(graphtest.OpReadPresences))-before)
		}()
		calls := waitSets(b, g, starts, time.Until(begin)+2*time.Minute)
		<-done
		e.stop()
		for _, c := range calls {
			lags = append(lags, c.Time.Sub(begin))
		}
	}
	slices.Sort(lags)
	b.ReportMetric(ms(worstRead), "read-ms")
	b.ReportMetric(float64(readCalls), "read-calls")
	b.ReportMetric(ms(percentile(lags, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lags, 99)), "p99-ms")
	b.ReportMetric(ms(lags[len(lags)-1]), "max-ms")
	b.ReportMetric(0, "ns/op")
}
