package state

import (
	"strings"
	"time"

	"github.com/calpresence/calpresence/internal/mailaddr"
)

// Signal events: what a live meeting signal says happened.
const (
	SignalEnded  = "ended"  // the meeting ended, for everyone
	SignalLeft   = "left"   // one participant left
	SignalJoined = "joined" // one participant joined
	// SignalPresence is what a vendor says a person is doing now
	// (Status: Zoom's presence_status), whatever the calendar says.
	SignalPresence = "presence"
	// SignalCall is the state of one phone call of a person (Meeting: the
	// call; Status: Webex Calling's state).
	SignalCall = "call"
)

// Signal is one live meeting fact from a vendor's webhook (Zoom, Webex):
// a meeting ended, or a participant left or joined it. It overrides the
// schedule the feeds show until it expires, also across a restart and
// later polls of a feed that still shows the meeting running.
type Signal struct {
	// ID identifies the fact: vendor, event, meeting, participant and
	// time. A vendor's retry of one delivery has the same ID.
	ID     string `json:"-"`
	Vendor string `json:"vendor"` // "zoom" or "webex"
	Event  string `json:"event"`  // SignalEnded, SignalLeft, SignalJoined, SignalPresence, SignalCall
	// Meeting is the meeting's key, as ical.MeetingKeys spells it
	// ("zoom:83412345678").
	Meeting string `json:"meeting"`
	// Email is the participant's address, lower-cased (left, joined).
	Email string `json:"email,omitempty"`
	// Person is the vendor's id of the person when the event names no
	// address (Webex Calling's personId): Email is looked up from it.
	Person string `json:"person,omitempty"`
	// Unverified: the vendor does not vouch for the participant's
	// address (a Zoom guest, typed into a form; a Webex participant
	// neither host, invitee nor of the webhook's org). Such a joined or
	// left acts only on an occurrence that names that person.
	Unverified bool `json:"unverified,omitempty"`
	// Status is the vendor's word for what the person is doing
	// (presence, call): "In_Meeting", "connected", …
	Status string `json:"status,omitempty"`
	// At is when it happened, by the vendor's clock (never after
	// Received).
	At       time.Time `json:"at"`
	Received time.Time `json:"received"`
	// Expires is when the signal stops mattering: after the scheduled end
	// of the occurrences it concerns, or the cap on an unscheduled call.
	Expires time.Time `json:"expires"`
}

// SignalID is the identity of a signal's fact (Signal.ID).
func SignalID(vendor, event, meeting, email string, at time.Time) string {
	return vendor + "|" + event + "|" + meeting + "|" + mailaddr.Normalize(email) + "|" + at.UTC().Format(time.RFC3339Nano)
}

// QueuedPrefix begins the ID of a signal queued for the replica that
// leads to apply (signals.Queue: a standby received the webhook). The
// leader reads them every 2 s, with QueuedSignals.
const QueuedPrefix = "inbox:"

// InstancePrefix begins the ID of a Webex meeting instance's record: its
// Meeting is the meeting key that instance stands for (from "meetings
// started"), shared by the replicas so that a participant's event received
// after a restart, or by another replica, still finds its meeting. It is
// no signal: engines skip it.
const InstancePrefix = "webex-instance:"

// SignalEventInstance is the Event of an InstancePrefix record.
const SignalEventInstance = "instance"

// Queued reports whether a signal stored under id waits in the inbox.
func Queued(id string) bool { return strings.HasPrefix(id, QueuedPrefix) }
