package signals

import (
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
