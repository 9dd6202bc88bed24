package signals

import (
	"slices"
	"strings"
	"time"

	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
)

// Zoom's presence_status values that make a person busy
// (user.presence_status_updated); any other (Available, Away,
// Do_Not_Disturb, Offline, …) ends what these started.
const (
	ZoomInMeeting   = "In_Meeting"
	ZoomPresenting  = "Presenting"
	ZoomOnPhoneCall = "On_Phone_Call"
)

// Webex Calling's call states (telephony_calls) that make a person busy;
// WebexCallEnded stands for "disconnected" and for the "deleted" event.
const (
	WebexConnected = "connected"
	WebexHeld      = "held"
	WebexCallEnded = "disconnected"
)

// StatusPair is the presence a presence or call signal asks for, and
// whether it asks for any: false ends what the person's earlier signal of
// the same kind started.
//
// Presenting is DoNotDisturb/Presenting, what Teams shows its own
// presenters; presence.Strength ranks it above every Busy pair, so that
// it wins over a calendar meeting it overlaps.
func StatusPair(s *state.Signal) (presence.Pair, bool) {
	switch s.Event {
	case state.SignalPresence:
		switch s.Status {
		case ZoomInMeeting:
			return presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInAConferenceCall}, true
		case ZoomPresenting:
			return presence.Pair{Availability: presence.DoNotDisturb, Activity: presence.ActivityPresenting}, true
		case ZoomOnPhoneCall:
			return presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInACall}, true
		}
	case state.SignalCall:
		switch s.Status {
		case WebexConnected, WebexHeld:
			return presence.Pair{Availability: presence.Busy, Activity: presence.ActivityInACall}, true
		}
	}
	return presence.Pair{}, false
}

// isLive says whether s is a presence or call signal: one that starts or
// ends a person's own span and never touches a calendar occurrence.
func isLive(s *state.Signal) bool {
	return s.Event == state.SignalPresence || s.Event == state.SignalCall
}

// Live is a presence or call signal in force: what the status page lists
// as a call in progress or a Zoom presence.
type Live struct {
	Email  string // the person's address, as the vendor named it (looked up for Webex Calling)
	Vendor string // "zoom", "webex"
	Kind   string // state.SignalPresence or state.SignalCall
	Call   string // Webex Calling's callId; "" for a presence
	Status string // the vendor's word: "On_Phone_Call", "connected", …
	Pair   presence.Pair
	Since  time.Time // the vendor's time of the status that started it
}

// InForce returns the presence and call signals in force at now, the
// newest first: per person and call (or Zoom presence), the latest status
// at or before now, when it asks for a pair and is no older than
// maxUnscheduled.
func InForce(sigs []state.Signal, now time.Time, maxUnscheduled time.Duration) []Live {
	type stream struct{ email, vendor, event, meeting string }
	last := make(map[stream]state.Signal)
	since := make(map[stream]time.Time)
	sorted := slices.Clone(sigs)
	slices.SortStableFunc(sorted, byTime)
	for _, s := range sorted {
		if !isLive(&s) || s.Email == "" || s.At.After(now) {
			continue
		}
		k := stream{s.Email, s.Vendor, s.Event, s.Meeting}
		prev, seen := last[k]
		pp, wasBusy := StatusPair(&prev)
		p, busy := StatusPair(&s)
		if busy && (!seen || !wasBusy || pp != p) {
			since[k] = s.At
		}
		last[k] = s
	}
	var out []Live
	for k, s := range last {
		p, busy := StatusPair(&s)
		if !busy || !now.Before(since[k].Add(maxUnscheduled)) {
			continue
		}
		l := Live{Email: k.email, Vendor: k.vendor, Kind: k.event, Status: s.Status, Pair: p, Since: since[k]}
		l.Call, _ = strings.CutPrefix(k.meeting, KeyWebexCall)
		if k.event != state.SignalCall {
			l.Call = ""
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Live) int {
		if c := b.Since.Compare(a.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Email+a.Call, b.Email+b.Call)
	})
	return out
}
