package engine

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/bolt"
	"github.com/calpresence/calpresence/sync/plan"
)

// pacedPresence answers every presence write after latency, each holding
// a slot of pacer from before the call until its answer, as graph's
// client does (graph.WithPacer), and notes when each call went out.
type pacedPresence struct {
	testutil.Presence
	pacer   *policy.Pacer
	latency time.Duration

	mu    sync.Mutex
	times []time.Time
}

func (p *pacedPresence) call(ctx context.Context) error {
	release, err := p.pacer.Acquire(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.times = append(p.times, time.Now())
	p.mu.Unlock()
	time.Sleep(p.latency)
	release()
	return nil
}

func (p *pacedPresence) SetPresence(ctx context.Context, _, _, _ string, _ time.Duration) error {
	return p.call(ctx)
}

func (p *pacedPresence) ClearPresence(ctx context.Context, _ string) error { return p.call(ctx) }

// BenchmarkBurst measures the rate of a restart's burst of presence calls
// (issue #21) through the executor: a state file holding sessions
// sessions, calls of them due at once (half sets, half clears), the
// presence pacer at rate, the gate at graph.max_concurrency 100 and a
// Graph answering in 150 ms. The actions come in reconciles of batch
// (the restart's reconciles as stored copies load), run one after the
// other as the engine does. It reports the calls a second from the first
// call to the last, and what the pacer allows (n per window, each slot
// counting from its call's end).
//
//	go test -run '^$' -bench Burst -benchtime 1x ./sync/engine/
func BenchmarkBurst(b *testing.B) {
	for _, c := range []struct {
		sessions, calls, batch int
		rate                   policy.Rate
	}{
		{100000, 10000, 10000, policy.Rate{N: 1000, Window: 3 * time.Second}},
		{100000, 10000, 1000, policy.Rate{N: 1000, Window: 3 * time.Second}},
		{100000, 30000, 30000, policy.Rate{N: 10000, Window: 30 * time.Second}},
	} {
		name := fmt.Sprintf("sessions=%d/calls=%d/batch=%d/rate=%d per %v", c.sessions, c.calls, c.batch, c.rate.N, c.rate.Window)
		b.Run(name, func(b *testing.B) {
			for range b.N {
				benchBurst(b, c.sessions, c.calls, c.batch, c.rate)
			}
		})
	}
}

func benchBurst(b *testing.B, sessions, calls, batch int, rate policy.Rate) {
	b.StopTimer()
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(b.TempDir(), "state.db"), 0)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	span := plan.Span{Start: now.Add(-time.Minute), End: now.Add(time.Hour)}
	all := make([]state.Session, sessions)
	for i := range all {
		all[i] = state.Session{UserID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), UPN: fmt.Sprintf("u%d@contoso.com", i),
			Availability: "Busy", Activity: "InACall", SpanStart: span.Start, SpanEnd: span.End,
			Expires: now.Add(5 * time.Minute), SetAt: now.Add(-time.Minute),
			Events: []state.EventRef{{Source: fmt.Sprintf("f%d", i), UID: fmt.Sprintf("restart-%d@example.com", i), Start: span.Start, End: span.End}}}
	}
	for chunk := range slices.Chunk(all, 10000) {
		if err := st.PutSessions(ctx, chunk); err != nil {
			b.Fatal(err)
		}
	}
	actions := make([]plan.Action, calls)
	for i := range actions {
		s := all[i*sessions/calls]
		a := plan.Action{Op: plan.OpClear, User: s.UserID, Name: s.UPN, Span: span, Reason: plan.ReasonEnd, Prev: s, HasPrev: true}
		if i%2 == 1 {
			a.Op, a.Reason = plan.OpSet, plan.ReasonStart
			a.Pair, a.Expiration = presence.Pair{Availability: "Busy", Activity: "InACall"}, 5*time.Minute
		}
		actions[i] = a
	}
	p := &pacedPresence{pacer: policy.NewPacer(rate), latency: 150 * time.Millisecond}
	cache := newSessionCache(st)
	if _, err := cache.Sessions(ctx); err != nil {
		b.Fatal(err)
	}
	x := newExecutor(p, cache, nil, policy.NewGate(100, rate), slog.New(slog.DiscardHandler), NewMetrics(nil))
	b.StartTimer()
	for chunk := range slices.Chunk(actions, batch) {
		for _, r := range x.run(ctx, chunk) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	b.StopTimer()
	slices.SortFunc(p.times, func(a, b time.Time) int { return a.Compare(b) })
	d := p.times[len(p.times)-1].Sub(p.times[0])
	b.ReportMetric(float64(len(p.times)-1)/d.Seconds(), "calls/s")
	// The pacer's best: n calls per window plus a call's latency.
	best := float64(rate.N) / (rate.Window + p.latency).Seconds()
	b.ReportMetric(best, "paced-calls/s")
}
