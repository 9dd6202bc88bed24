package plan

import (
	"testing"
	"time"

	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
)

// A call of unknown end (8 h, InACall) from 15:00 and a meeting
// (InAConferenceCall) from 19:00 to 20:00 make one span; it shows the call,
// then the meeting while it runs, then the call again.
func TestSpanPairAt(t *testing.T) {
	call := Match{User: alice, Occ: occ("call", 0, 8*time.Hour), Rule: &Rule{Source: "zoom-presence", Pair: inCall}}
	meeting := busy(alice, occ("m", 4*time.Hour, time.Hour))
	present := Match{User: alice, Occ: occ("p", 4*time.Hour+10*minute, 20*minute),
		Rule: &Rule{Source: "zoom-presence", Pair: presence.Pair{Availability: presence.DoNotDisturb, Activity: presence.ActivityPresenting}}}
	spans := Spans([]Match{meeting, call, present}, 2*minute, nil)[alice]
	if len(spans) != 1 {
		t.Fatalf("Spans = %+v; want one", spans)
	}
	s := spans[0]
	if s.Pair != present.Pair {
		t.Errorf("Pair = %v; want the strongest of the span, %v", s.Pair, present.Pair)
	}
	for _, tt := range []struct {
		at         time.Duration
		want       presence.Pair
		nextChange time.Duration // 0: none
	}{
		{0, inCall, 4 * time.Hour},
		{3*time.Hour + 59*minute, inCall, 4 * time.Hour},
		{4 * time.Hour, conf, 4*time.Hour + 10*minute},
		{4*time.Hour + 10*minute, present.Pair, 4*time.Hour + 30*minute},
		{4*time.Hour + 30*minute, conf, 5 * time.Hour},
		{5 * time.Hour, inCall, 0},
		{7*time.Hour + 59*minute, inCall, 0},
	} {
		at := t0.Add(tt.at)
		if got := s.PairAt(at); got != tt.want {
			t.Errorf("PairAt(+%v) = %v; want %v", tt.at, got, tt.want)
		}
		want := time.Time{}
		if tt.nextChange > 0 {
			want = t0.Add(tt.nextChange)
		}
		if got := s.NextPairChange(at); !got.Equal(want) {
			t.Errorf("NextPairChange(+%v) = %v; want %v", tt.at, got, want)
		}
	}

	// In a gap shorter than merge_gap: what ended last, not a change.
	a, b := busy(alice, occ("a", 0, 30*minute)), Match{User: alice, Occ: occ("b", 31*minute, 30*minute), Rule: &Rule{Source: "webex", Pair: inCall}}
	gap := Spans([]Match{a, b}, 2*minute, nil)[alice][0]
	if got := gap.PairAt(t0.Add(30*minute + 30*time.Second)); got != conf {
		t.Errorf("PairAt in the gap = %v; want the meeting that ended last, %v", got, conf)
	}
	// A span a session record describes has no matches: its Pair.
	rec := Span{User: alice, Start: t0, End: t0.Add(time.Hour), Pair: inCall}
	if got, next := rec.PairAt(t0), rec.NextPairChange(t0); got != inCall || !next.IsZero() {
		t.Errorf("a recorded span: PairAt = %v, NextPairChange = %v; want %v and none", got, next, inCall)
	}
}

// Reconcile follows the span's pair: the call is set, the meeting's start
// is a boundary that sets the stronger pair on the same session (no
// clear), and its end sets the call's again.
func TestReconcileFollowsThePairWithinASpan(t *testing.T) {
	call := Match{User: alice, Occ: occ("call", 0, 3*time.Hour), Rule: &Rule{Source: "zoom-presence", Pair: inCall}}
	meeting := busy(alice, occ("m", time.Hour, time.Hour))
	spans := Spans([]Match{call, meeting}, 2*minute, nil)
	in := ReconcileInput{Spans: spans, MaxLease: 4 * time.Hour, Known: func(string) bool { return true }}
	var sessions = map[string]state.Session{}
	step := func(at time.Duration, want []brief, wantNext time.Duration) {
		t.Helper()
		in.Now, in.Sessions = t0.Add(at), sessions
		actions, next := Reconcile(in)
		if got := briefs(actions); !equalBriefs(got, want) {
			t.Errorf("at +%v: actions %+v; want %+v", at, got, want)
		}
		if !next.Equal(t0.Add(wantNext)) {
			t.Errorf("at +%v: next +%v; want +%v", at, next.Sub(t0), wantNext)
		}
		for _, a := range actions {
			if a.Op == OpSet {
				sessions = map[string]state.Session{alice: {UserID: alice, Availability: a.Pair.Availability, Activity: a.Pair.Activity,
					SpanStart: a.Span.Start, SpanEnd: a.Span.End, SetAt: in.Now, Expires: in.Now.Add(a.Expiration)}}
			}
		}
	}
	step(0, []brief{{OpSet, alice, ReasonStart, 3 * time.Hour, presence.ActivityInACall}}, time.Hour)
	step(30*minute, nil, time.Hour)
	step(time.Hour, []brief{{OpSet, alice, ReasonChanged, 2 * time.Hour, presence.ActivityInAConferenceCall}}, 2*time.Hour)
	step(2*time.Hour, []brief{{OpSet, alice, ReasonChanged, time.Hour, presence.ActivityInACall}}, 3*time.Hour)
}

func equalBriefs(a, b []brief) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
