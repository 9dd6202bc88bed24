package signals

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/plan"
)

const zoomKey = "zoom:83412345678"

var (
	t0     = time.Date(2027, 3, 4, 15, 0, 0, 0, time.UTC)
	conf   = presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInAConferenceCall}
	minute = time.Minute
	alice  = "alice@contoso.com"
)

// occ makes an occurrence of uid from t0+start lasting dur.
func occ(uid string, start, dur time.Duration) *plan.Occurrence {
	return &plan.Occurrence{UID: uid, Start: t0.Add(start), End: t0.Add(start + dur)}
}

// busy is a match that makes user busy for o.
func busy(user string, o *plan.Occurrence) plan.Match {
	return plan.Match{User: user, Occ: o, Rule: &plan.Rule{Source: "zoom", Pair: conf}}
}

func sig(event, email string, at time.Duration) state.Signal {
	s := state.Signal{Vendor: "zoom", Event: event, Meeting: zoomKey, Email: email, At: t0.Add(at)}
	s.ID = state.SignalID(s.Vendor, s.Event, s.Meeting, s.Email, s.At)
	return s
}

func keyed(o *plan.Occurrence, keys ...string) *plan.Occurrence {
	o.MeetingKeys = keys
	return o
}

// spanList renders spans as "user start-end" in minutes after t0.
func spanList(spans map[string][]plan.Span) []string {
	var out []string
	for _, u := range slices.Sorted(maps.Keys(spans)) {
		for _, s := range spans[u] {
			out = append(out, fmt.Sprintf("%s %v-%v", u, s.Start.Sub(t0), s.End.Sub(t0)))
		}
	}
	return out
}

func TestApplySignals(t *testing.T) {
	const bob = "bob@contoso.com"
	meeting := keyed(occ("m", 10*minute, 60*minute), zoomKey)
	daily := keyed(occ("d", 24*60*minute, 60*minute), zoomKey) // the same number tomorrow
	other := keyed(occ("o", 10*minute, 60*minute), "zoom:99999999999")
	base := []plan.Match{busy(alice, meeting), busy(bob, meeting), busy(alice, daily), busy(bob, other)}
	tests := []struct {
		name string
		sigs []state.Signal
		want []string
	}{
		{"no signal", nil, []string{
			"alice@contoso.com 10m0s-1h10m0s", "alice@contoso.com 24h0m0s-25h0m0s", "bob@contoso.com 10m0s-1h10m0s"}},
		{"ended early ends it for everyone, not tomorrow's", []state.Signal{sig(state.SignalEnded, "", 30*minute)}, []string{
			"alice@contoso.com 10m0s-30m0s", "alice@contoso.com 24h0m0s-25h0m0s", "bob@contoso.com 10m0s-1h10m0s"}},
		{"one participant left", []state.Signal{sig(state.SignalLeft, alice, 30*minute)}, []string{
			"alice@contoso.com 10m0s-30m0s", "alice@contoso.com 24h0m0s-25h0m0s", "bob@contoso.com 10m0s-1h10m0s"}},
		{"left then rejoined", []state.Signal{sig(state.SignalLeft, alice, 30*minute), sig(state.SignalJoined, alice, 40*minute)}, []string{
			"alice@contoso.com 10m0s-30m0s", "alice@contoso.com 40m0s-1h10m0s", "alice@contoso.com 24h0m0s-25h0m0s", "bob@contoso.com 10m0s-1h10m0s"}},
		{"left then rejoined within merge_gap is one span", []state.Signal{sig(state.SignalLeft, alice, 30*minute), sig(state.SignalJoined, alice, 31*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s", "alice@contoso.com 24h0m0s-25h0m0s", "bob@contoso.com 10m0s-1h10m0s"}},
		{"ended before it began (a reused number) does not touch it", []state.Signal{sig(state.SignalEnded, "", 5*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s", "alice@contoso.com 24h0m0s-25h0m0s", "bob@contoso.com 10m0s-1h10m0s"}},
		{"unscheduled join until ended", []state.Signal{
			{Vendor: "zoom", Event: state.SignalJoined, Meeting: "zoom:55555555555", Email: "carol@contoso.com", At: t0.Add(2 * 60 * minute), ID: "j"},
			{Vendor: "zoom", Event: state.SignalEnded, Meeting: "zoom:55555555555", At: t0.Add(2*60*minute + 25*minute), ID: "e"}}, []string{
			"alice@contoso.com 10m0s-1h10m0s", "alice@contoso.com 24h0m0s-25h0m0s", "bob@contoso.com 10m0s-1h10m0s", "carol@contoso.com 2h0m0s-2h25m0s"}},
		{"unscheduled join without left is capped", []state.Signal{
			{Vendor: "zoom", Event: state.SignalJoined, Meeting: "zoom:55555555555", Email: "carol@contoso.com", At: t0.Add(2 * 60 * minute), ID: "j"}}, []string{
			"alice@contoso.com 10m0s-1h10m0s", "alice@contoso.com 24h0m0s-25h0m0s", "bob@contoso.com 10m0s-1h10m0s", "carol@contoso.com 2h0m0s-3h0m0s"}},
		{"joined inside one's own scheduled meeting adds nothing", []state.Signal{sig(state.SignalJoined, alice, 12*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s", "alice@contoso.com 24h0m0s-25h0m0s", "bob@contoso.com 10m0s-1h10m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := make([]plan.Match, len(base))
			copy(in, base)
			before := make([]time.Time, len(base))
			for i := range base {
				before[i] = base[i].Occ.End
			}
			got := Apply(in, tt.sigs, conf, time.Hour, nil, nil)
			if g := spanList(plan.Spans(got, 2*minute, nil)); strings.Join(g, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("spans after Apply:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(tt.want, "\n"))
			}
			// The feed's occurrences are shared: never changed.
			for i := range base {
				if base[i].Occ.End != before[i] {
					t.Errorf("Apply changed the shared occurrence of match %d", i)
				}
			}
		})
	}
}

// TestApplyKeepsSharedRule: the parts of a meeting a signal cuts lose
// their lead or grace on a Rule of their own; the Rule the source's other
// matches share keeps both.
func TestApplyKeepsSharedRule(t *testing.T) {
	const bob = "bob@contoso.com"
	want := plan.Rule{Source: "zoom", Pair: conf, Lead: 5 * minute, Grace: 10 * minute}
	rule := &plan.Rule{Source: want.Source, Pair: want.Pair, Lead: want.Lead, Grace: want.Grace}
	meeting := keyed(occ("m", 10*minute, 60*minute), zoomKey)
	other := keyed(occ("o", 10*minute, 60*minute), "zoom:99999999999")
	in := []plan.Match{{User: alice, Occ: meeting, Rule: rule}, {User: bob, Occ: other, Rule: rule}}
	got := Apply(in, []state.Signal{sig(state.SignalLeft, alice, 30*minute), sig(state.SignalJoined, alice, 40*minute)}, conf, time.Hour, nil, nil)
	spans := []string{"alice@contoso.com 5m0s-30m0s", "alice@contoso.com 40m0s-1h20m0s", "bob@contoso.com 5m0s-1h20m0s"}
	if g := spanList(plan.Spans(got, 2*minute, nil)); strings.Join(g, "\n") != strings.Join(spans, "\n") {
		t.Errorf("spans after Apply:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(spans, "\n"))
	}
	if *rule != want {
		t.Errorf("Apply changed the shared rule to %+v; want %+v", *rule, want)
	}
}

// live is a presence or call signal of email at t0+at.
func live(vendor, event, meeting, email, status string, at time.Duration) state.Signal {
	s := state.Signal{Vendor: vendor, Event: event, Meeting: meeting, Email: email, Status: status, At: t0.Add(at)}
	s, _ = Normalize(withReceived(s))
	return s
}

func withReceived(s state.Signal) state.Signal {
	s.Received = t0.Add(48 * time.Hour)
	return s
}

// receivedAfter is s received d after the others.
func receivedAfter(s state.Signal, d time.Duration) state.Signal {
	s.Received = s.Received.Add(d)
	return s
}

// TestApplyPresenceAndCalls: Zoom presence and Webex calls are spans of
// their own, ordered by the vendor's time; they never end a calendar span.
func TestApplyPresenceAndCalls(t *testing.T) {
	const carol = "carol@contoso.com"
	meeting := keyed(occ("m", 10*minute, 60*minute), zoomKey)
	base := []plan.Match{busy(alice, meeting)}
	zp := func(email, status string, at time.Duration) state.Signal {
		return live("zoom", state.SignalPresence, "zoom-presence", email, status, at)
	}
	call := func(id, status string, at time.Duration) state.Signal {
		return live("webex", state.SignalCall, "webex-call:"+id, carol, status, at)
	}
	tests := []struct {
		name string
		sigs []state.Signal
		want []string
	}{
		{"In_Meeting until Available", []state.Signal{zp(carol, ZoomInMeeting, 100*minute), zp(carol, "Available", 130*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s Busy/InAConferenceCall", "carol@contoso.com 1h40m0s-2h10m0s Busy/InAConferenceCall"}},
		{"an older status delivered later does not override a newer one", []state.Signal{zp(carol, "Available", 130*minute), zp(carol, ZoomOnPhoneCall, 100*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s Busy/InAConferenceCall", "carol@contoso.com 1h40m0s-2h10m0s Busy/InACall"}},
		{"Presenting is DoNotDisturb/Presenting", []state.Signal{zp(carol, ZoomPresenting, 100*minute), zp(carol, "Away", 110*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s Busy/InAConferenceCall", "carol@contoso.com 1h40m0s-1h50m0s DoNotDisturb/Presenting"}},
		{"without an end, capped", []state.Signal{zp(carol, ZoomInMeeting, 100*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s Busy/InAConferenceCall", "carol@contoso.com 1h40m0s-2h40m0s Busy/InAConferenceCall"}},
		{"Available never ends a calendar span", []state.Signal{zp(alice, ZoomOnPhoneCall, 20*minute), zp(alice, "Available", 30*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s Busy/InAConferenceCall"}},
		{"Presenting in a calendar meeting wins", []state.Signal{zp(alice, ZoomPresenting, 20*minute), zp(alice, "Available", 30*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s DoNotDisturb/Presenting"}},
		{"two calls at once: busy until both end", []state.Signal{
			call("a", WebexConnected, 100*minute), call("b", WebexConnected, 110*minute), call("a", WebexHeld, 112*minute),
			call("a", WebexCallEnded, 120*minute), call("b", WebexCallEnded, 140*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s Busy/InAConferenceCall", "carol@contoso.com 1h40m0s-2h20m0s Busy/InACall"}},
		// Zoom's date_time counts seconds: two statuses in one second are
		// ordered by their arrival.
		{"in one second, the status received last wins (call ended)", []state.Signal{
			receivedAfter(zp(carol, ZoomOnPhoneCall, 100*minute), 0), receivedAfter(zp(carol, "Available", 100*minute), time.Second)}, []string{
			"alice@contoso.com 10m0s-1h10m0s Busy/InAConferenceCall"}},
		{"in one second, the status received last wins (call began)", []state.Signal{
			receivedAfter(zp(carol, ZoomOnPhoneCall, 100*minute), time.Second), receivedAfter(zp(carol, "Available", 100*minute), 0)}, []string{
			"alice@contoso.com 10m0s-1h10m0s Busy/InAConferenceCall", "carol@contoso.com 1h40m0s-2h40m0s Busy/InACall"}},
		{"a call's end delivered first still ends it", []state.Signal{call("a", WebexCallEnded, 120*minute), call("a", WebexConnected, 100*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s Busy/InAConferenceCall", "carol@contoso.com 1h40m0s-2h0m0s Busy/InACall"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Apply(slices.Clone(base), tt.sigs, conf, time.Hour, nil, nil)
			var g []string
			spans := plan.Spans(got, 2*minute, nil)
			for _, u := range slices.Sorted(maps.Keys(spans)) {
				for _, s := range spans[u] {
					g = append(g, fmt.Sprintf("%s %v-%v %s/%s", u, s.Start.Sub(t0), s.End.Sub(t0), s.Pair.Availability, s.Pair.Activity))
				}
			}
			if strings.Join(g, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("spans after Apply:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestInForce: what the status page lists as calls in progress and Zoom
// presence in force: per person and call, the latest status (by the
// vendor's time, then arrival), while it asks for a pair and within the
// cap.
func TestInForce(t *testing.T) {
	const carol = "carol@contoso.com"
	zp := func(status string, at time.Duration) state.Signal {
		return live("zoom", state.SignalPresence, "zoom-presence", carol, status, at)
	}
	call := func(id, status string, at time.Duration) state.Signal {
		return live("webex", state.SignalCall, KeyWebexCall+id, carol, status, at)
	}
	tests := []struct {
		name string
		sigs []state.Signal
		now  time.Duration
		want []string
	}{
		{"a call and a presence", []state.Signal{call("a", WebexConnected, 10*minute), zp(ZoomInMeeting, 20*minute)}, 30 * minute,
			[]string{"zoom  In_Meeting Busy/InAConferenceCall since 20m0s", "webex a connected Busy/InACall since 10m0s"}},
		{"held keeps the call's start", []state.Signal{call("a", WebexConnected, 10*minute), call("a", WebexHeld, 20*minute)}, 30 * minute,
			[]string{"webex a held Busy/InACall since 10m0s"}},
		{"ended", []state.Signal{call("a", WebexConnected, 10*minute), call("a", WebexCallEnded, 20*minute)}, 30 * minute, nil},
		{"not yet", []state.Signal{zp(ZoomInMeeting, 40*minute)}, 30 * minute, nil},
		{"past the cap", []state.Signal{zp(ZoomInMeeting, 10*minute)}, 80 * minute, nil},
		{"in one second, the status received last", []state.Signal{
			receivedAfter(zp("Available", 10*minute), time.Second), receivedAfter(zp(ZoomOnPhoneCall, 10*minute), 0)}, 30 * minute, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, l := range InForce(tt.sigs, t0.Add(tt.now), time.Hour) {
				got = append(got, fmt.Sprintf("%s %s %s %s/%s since %v", l.Vendor, l.Call, l.Status, l.Pair.Availability, l.Pair.Activity, l.Since.Sub(t0)))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("InForce at %v = %q; want %q", tt.now, got, tt.want)
			}
		})
	}
}
