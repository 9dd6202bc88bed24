package plan

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
)

var (
	t0     = time.Date(2027, 3, 4, 15, 0, 0, 0, time.UTC)
	conf   = presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInAConferenceCall}
	inCall = presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInACall}
	minute = time.Minute
	alice  = "alice@contoso.com"
)

// occ makes an occurrence of uid from t0+start lasting dur.
func occ(uid string, start, dur time.Duration) *Occurrence {
	return &Occurrence{UID: uid, Start: t0.Add(start), End: t0.Add(start + dur)}
}

func busy(user string, o *Occurrence) Match {
	return Match{User: user, Occ: o, Rule: &Rule{Source: "zoom", Pair: conf}}
}

// held is the session a successful set at setAt for span [start, end) leaves.
func held(start, end time.Time, setAt time.Time, lease time.Duration, events ...*Occurrence) state.Session {
	s := state.Session{UserID: alice, Availability: conf.Availability, Activity: conf.Activity,
		SpanStart: start, SpanEnd: end, SetAt: setAt, Expires: setAt.Add(lease)}
	for _, o := range events {
		s.Events = append(s.Events, state.EventRef{Source: "zoom", UID: o.UID, RecurrenceID: o.RecurrenceID, Start: o.Start, End: o.End})
	}
	return s
}

type brief struct {
	Op, User, Reason string
	Expiration       time.Duration
	Activity         string
}

func briefs(actions []Action) []brief {
	var out []brief
	for _, a := range actions {
		out = append(out, brief{a.Op, a.User, a.Reason, a.Expiration, a.Pair.Activity})
	}
	return out
}

func TestReconcile(t *testing.T) {
	meeting := occ("m1", 0, time.Hour)         // 15:00-16:00
	short := occ("s1", 0, 3*minute)            // 15:00-15:03
	workshop := occ("w1", 0, 6*time.Hour)      // 15:00-21:00
	later := occ("m1", 2*time.Hour, time.Hour) // m1 moved to 17:00
	cancelled := *meeting
	shortened := occ("m1", 0, 20*minute)

	tests := []struct {
		name     string
		now      time.Time
		matches  []Match
		sessions map[string]state.Session
		known    bool
		want     []brief
		wantNext time.Time
	}{
		{
			name: "start sets with the span's length", now: t0,
			matches: []Match{busy(alice, meeting)}, known: true,
			want:     []brief{{OpSet, alice, ReasonStart, time.Hour, conf.Activity}},
			wantNext: t0.Add(time.Hour),
		},
		{
			name: "future span waits for its start", now: t0.Add(-10 * minute),
			matches: []Match{busy(alice, meeting)}, known: true,
			wantNext: t0,
		},
		{
			name: "short span gets the 5 minute minimum", now: t0,
			matches: []Match{busy(alice, short)}, known: true,
			want:     []brief{{OpSet, alice, ReasonStart, presence.MinLease, conf.Activity}},
			wantNext: t0.Add(3 * minute),
		},
		{
			name: "short span is cleared explicitly at its end", now: t0.Add(3 * minute),
			matches:  []Match{busy(alice, short)},
			sessions: map[string]state.Session{alice: held(t0, t0.Add(3*minute), t0, presence.MinLease, short)}, known: true,
			want: []brief{{OpClear, alice, ReasonEnd, 0, ""}},
		},
		{
			name: "lease ending with the span is not cleared", now: t0.Add(time.Hour),
			matches:  []Match{busy(alice, meeting)},
			sessions: map[string]state.Session{alice: held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)}, known: true,
			want: []brief{{OpForget, alice, ReasonEnd, 0, ""}},
		},
		{
			name: "unchanged running span makes no call", now: t0.Add(30 * minute),
			matches:  []Match{busy(alice, meeting)},
			sessions: map[string]state.Session{alice: held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)}, known: true,
			wantNext: t0.Add(time.Hour),
		},
		{
			name: "long span is capped at max_lease", now: t0,
			matches: []Match{busy(alice, workshop)}, known: true,
			want:     []brief{{OpSet, alice, ReasonStart, 4 * time.Hour, conf.Activity}},
			wantNext: t0.Add(6 * time.Hour),
		},
		{
			name: "keep-alive is due before the lease runs out", now: t0.Add(3*time.Hour + 30*minute),
			matches:  []Match{busy(alice, workshop)},
			sessions: map[string]state.Session{alice: held(t0, t0.Add(6*time.Hour), t0, 4*time.Hour, workshop)}, known: true,
			wantNext: t0.Add(4*time.Hour - RenewBefore),
		},
		{
			name: "keep-alive renews for the rest of the span", now: t0.Add(4*time.Hour - RenewBefore),
			matches:  []Match{busy(alice, workshop)},
			sessions: map[string]state.Session{alice: held(t0, t0.Add(6*time.Hour), t0, 4*time.Hour, workshop)}, known: true,
			want:     []brief{{OpSet, alice, ReasonKeepAlive, 2*time.Hour + RenewBefore, conf.Activity}},
			wantNext: t0.Add(6 * time.Hour),
		},
		{
			name: "removed event clears at once", now: t0.Add(10 * minute),
			sessions: map[string]state.Session{alice: held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)}, known: true,
			want: []brief{{OpClear, alice, ReasonEarlyRemoved, 0, ""}},
		},
		{
			name: "cancelled event clears at once", now: t0.Add(10 * minute),
			matches:  []Match{{User: alice, Occ: &cancelled, Rule: &Rule{Source: "zoom", Pair: conf}, Skip: SkipCancelled}},
			sessions: map[string]state.Session{alice: held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)}, known: true,
			want: []brief{{OpClear, alice, ReasonEarlyCancelled, 0, ""}},
		},
		{
			name: "declined event clears at once", now: t0.Add(10 * minute),
			matches:  []Match{{User: alice, Occ: meeting, Rule: &Rule{Source: "zoom", Pair: conf}, Skip: SkipDeclined}},
			sessions: map[string]state.Session{alice: held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)}, known: true,
			want: []brief{{OpClear, alice, ReasonEarlyDeclined, 0, ""}},
		},
		{
			name: "moved later clears now and waits for the new start", now: t0.Add(10 * minute),
			matches:  []Match{busy(alice, later)},
			sessions: map[string]state.Session{alice: held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)}, known: true,
			want:     []brief{{OpClear, alice, ReasonEarlyMoved, 0, ""}},
			wantNext: t0.Add(2 * time.Hour),
		},
		{
			name: "shortened to before now clears at once", now: t0.Add(30 * minute),
			matches:  []Match{busy(alice, shortened)},
			sessions: map[string]state.Session{alice: held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)}, known: true,
			want: []brief{{OpClear, alice, ReasonEarlyShortened, 0, ""}},
		},
		{
			name: "shortened but running moves the end boundary", now: t0.Add(10 * minute),
			matches:  []Match{busy(alice, shortened)},
			sessions: map[string]state.Session{alice: held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)}, known: true,
			want:     []brief{{OpNote, alice, ReasonShortened, 0, conf.Activity}},
			wantNext: t0.Add(20 * minute),
		},
		{
			name: "extended event is re-set with the new expiry", now: t0.Add(30 * minute),
			matches:  []Match{busy(alice, occ("m1", 0, 2*time.Hour))},
			sessions: map[string]state.Session{alice: held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)}, known: true,
			want:     []brief{{OpSet, alice, ReasonExtended, 90 * minute, conf.Activity}},
			wantNext: t0.Add(2 * time.Hour),
		},
		{
			name: "an unread source never clears", now: t0.Add(10 * minute),
			sessions: map[string]state.Session{alice: held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)}, known: false,
			wantNext: t0.Add(time.Hour),
		},
		{
			name: "expired session without a span is forgotten", now: t0.Add(2 * time.Hour),
			sessions: map[string]state.Session{alice: held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)}, known: true,
			want: []brief{{OpForget, alice, ReasonEnd, 0, ""}},
		},
		{
			name: "stronger activity from an overlapping source re-sets", now: t0.Add(10 * minute),
			matches: []Match{busy(alice, meeting), {User: alice, Occ: occ("w", 5*minute, 10*minute), Rule: &Rule{Source: "webex", Pair: inCall}}},
			sessions: map[string]state.Session{alice: func() state.Session {
				s := held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)
				s.Activity = inCall.Activity
				return s
			}()}, known: true,
			want:     []brief{{OpSet, alice, ReasonChanged, 50 * minute, conf.Activity}},
			wantNext: t0.Add(time.Hour),
		},
		{
			name: "a set in flight at a crash is repeated", now: t0.Add(10 * minute),
			matches: []Match{busy(alice, meeting)},
			sessions: map[string]state.Session{alice: func() state.Session {
				s := held(t0, t0.Add(time.Hour), time.Time{}, 0, meeting)
				s.Pending = OpSet
				return s
			}()}, known: true,
			want:     []brief{{OpSet, alice, ReasonStart, 50 * minute, conf.Activity}},
			wantNext: t0.Add(time.Hour),
		},
		{
			name: "a clear in flight at a crash is repeated", now: t0.Add(4 * minute),
			matches: []Match{busy(alice, short)},
			sessions: map[string]state.Session{alice: func() state.Session {
				s := held(t0, t0.Add(3*minute), t0, presence.MinLease, short)
				s.Pending = OpClear
				return s
			}()}, known: true,
			want: []brief{{OpClear, alice, ReasonEnd, 0, ""}},
		},
		{
			name: "a clear pending past its lease is forgotten: Graph dropped the session", now: t0.Add(70 * minute),
			matches: []Match{busy(alice, short)},
			sessions: map[string]state.Session{alice: func() state.Session {
				s := held(t0, t0.Add(3*minute), t0, presence.MinLease, short)
				s.Pending = OpClear
				return s
			}()}, known: true,
			want: []brief{{OpForget, alice, ReasonEnd, 0, ""}},
		},
		{
			name: "a session the read-back found lost is set again", now: t0.Add(30 * minute),
			matches: []Match{busy(alice, meeting)},
			sessions: map[string]state.Session{alice: func() state.Session {
				s := held(t0, t0.Add(time.Hour), t0, time.Hour, meeting)
				s.Lost = true
				return s
			}()}, known: true,
			want:     []brief{{OpSet, alice, ReasonLost, 30 * minute, conf.Activity}},
			wantNext: t0.Add(time.Hour),
		},
		{
			name: "the person's own status: no keep-alive for the rest of the span", now: t0.Add(4*time.Hour - 5*minute),
			matches: []Match{busy(alice, workshop)},
			sessions: map[string]state.Session{alice: func() state.Session {
				s := held(t0, t0.Add(6*time.Hour), t0, 4*time.Hour, workshop)
				s.OwnStatusUntil = t0.Add(6 * time.Hour)
				return s
			}()}, known: true,
			wantNext: t0.Add(6 * time.Hour),
		},
		{
			name: "the person's own status: the span's end is cleared as usual", now: t0.Add(time.Hour),
			matches: []Match{busy(alice, meeting)},
			sessions: map[string]state.Session{alice: func() state.Session {
				s := held(t0, t0.Add(time.Hour), t0, 2*time.Hour, meeting)
				s.OwnStatusUntil = t0.Add(time.Hour)
				return s
			}()}, known: true,
			want: []brief{{OpClear, alice, ReasonEnd, 0, ""}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next := Reconcile(ReconcileInput{
				Now: tt.now, Spans: Spans(tt.matches, 2*minute, nil), Sessions: tt.sessions, Matches: tt.matches,
				Known: func(string) bool { return tt.known }, MaxLease: 4 * time.Hour,
			})
			if diff := cmp.Diff(tt.want, briefs(got)); diff != "" {
				t.Errorf("Reconcile actions (-want +got):\n%s", diff)
			}
			if !next.Equal(tt.wantNext) {
				t.Errorf("Reconcile next = %v; want %v", next, tt.wantNext)
			}
		})
	}
}

func TestReconcileRestartReasons(t *testing.T) {
	meeting := occ("m1", 0, time.Hour)
	started := t0.Add(10 * minute)
	got, _ := Reconcile(ReconcileInput{
		Now: started, Spans: Spans([]Match{busy(alice, meeting)}, 0, nil), Known: func(string) bool { return true },
		MaxLease: 4 * time.Hour, FirstPass: true, Started: started,
	})
	if want := []brief{{OpSet, alice, ReasonRestart, 50 * minute, conf.Activity}}; !cmp.Equal(briefs(got), want) {
		t.Errorf("Reconcile on start mid-span = %v; want %v", briefs(got), want)
	}
	// A span that ended while the worker was down, with a lease still live.
	sess := held(t0, t0.Add(3*minute), t0, presence.MinLease)
	got, _ = Reconcile(ReconcileInput{
		Now: t0.Add(4 * minute), Sessions: map[string]state.Session{alice: sess}, Known: func(string) bool { return true },
		MaxLease: 4 * time.Hour, FirstPass: true, Started: t0.Add(4 * minute),
	})
	if want := []brief{{OpClear, alice, ReasonRestart, 0, ""}}; !cmp.Equal(briefs(got), want) {
		t.Errorf("Reconcile on start after the span = %v; want %v", briefs(got), want)
	}
}

func TestSpans(t *testing.T) {
	a := occ("a", 0, 30*minute)
	b := occ("b", 31*minute, 30*minute) // 1 minute gap: merges under a 2m merge_gap
	c := occ("c", 2*time.Hour, 30*minute)
	w := Match{User: alice, Occ: occ("w", 10*minute, 5*minute), Rule: &Rule{Source: "webex", Pair: inCall}}
	lead := busy(alice, c)
	lead.Lead, lead.Grace = 5*minute, 10*minute
	skipped := busy(alice, occ("x", 5*time.Hour, time.Hour))
	skipped.Skip = SkipTransparent

	got := Spans([]Match{busy(alice, b), w, busy(alice, a), lead, skipped}, 2*minute, nil)[alice]
	type span struct {
		Start, End time.Time
		Activity   string
		Events     int
	}
	var gotBrief []span
	for _, s := range got {
		gotBrief = append(gotBrief, span{s.Start, s.End, s.Pair.Activity, len(s.Events())})
	}
	want := []span{
		{t0, t0.Add(61 * minute), conf.Activity, 3},
		{t0.Add(2*time.Hour - 5*minute), t0.Add(2*time.Hour + 40*minute), conf.Activity, 1},
	}
	if diff := cmp.Diff(want, gotBrief); diff != "" {
		t.Errorf("Spans (-want +got):\n%s", diff)
	}
	// Without a merge gap the 1-minute gap stays; touching spans still join.
	got = Spans([]Match{busy(alice, a), busy(alice, b), busy(alice, occ("d", 61*minute, 10*minute))}, 0, nil)[alice]
	if len(got) != 2 || !got[1].End.Equal(t0.Add(71*minute)) {
		t.Errorf("Spans with merge_gap 0 = %+v; want 2 spans, the second ending at +71m", got)
	}
}

// TestReconcileSpreadsALargeBurstAroundItsStart: when more people start at
// one instant than the rate allows in a second, their sets begin
// N/(2×rate) before it (at most LeadBurst), so the worst lag is halved; a
// burst the rate sends within a second waits for its start.
func TestReconcileSpreadsALargeBurstAroundItsStart(t *testing.T) {
	burst := func(n int) map[string][]Span {
		spans := make(map[string][]Span, n)
		for i := range n {
			u := fmt.Sprintf("user%04d@contoso.com", i)
			spans[u] = []Span{{User: u, Start: t0, End: t0.Add(time.Hour), Pair: conf}}
		}
		return spans
	}
	in := func(n int, now time.Time, leadBurst time.Duration) ReconcileInput {
		return ReconcileInput{Now: now, Spans: burst(n), Known: func(string) bool { return true }, MaxLease: 4 * time.Hour,
			Rate: 10000.0 / 30, LeadBurst: leadBurst}
	}
	// 1,000 at 333/s take 3 s: begin 1.5 s early.
	if actions, next := Reconcile(in(1000, t0.Add(-2*time.Second), 5*time.Second)); len(actions) != 0 || !next.Equal(t0.Add(-1500*time.Millisecond)) {
		t.Errorf("2 s before: %d actions, next %v; want none and a wake 1.5 s before the start", len(actions), next.Sub(t0))
	}
	actions, _ := Reconcile(in(1000, t0.Add(-1500*time.Millisecond), 5*time.Second))
	if len(actions) != 1000 || actions[0].Op != OpSet || !actions[0].Due.Equal(t0) || actions[0].Reason != ReasonStart {
		t.Errorf("1.5 s before: %d actions (first %+v); want 1,000 sets due at the start", len(actions), actions[0])
	}
	// 10,000 would be 15 s early: capped at LeadBurst.
	if _, next := Reconcile(in(10000, t0.Add(-time.Minute), 5*time.Second)); !next.Equal(t0.Add(-5 * time.Second)) {
		t.Errorf("10,000 starts: wake %v before the start; want 5s (LeadBurst)", t0.Sub(next))
	}
	// 300 fit in a second: on time. LeadBurst 0: never early.
	for _, c := range []struct {
		n    int
		lead time.Duration
	}{{300, 5 * time.Second}, {1000, 0}} {
		if actions, next := Reconcile(in(c.n, t0.Add(-time.Second), c.lead)); len(actions) != 0 || !next.Equal(t0) {
			t.Errorf("%d starts, lead_burst %v: %d actions, next %v; want none before the start", c.n, c.lead, len(actions), next.Sub(t0))
		}
	}
}
