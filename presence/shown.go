package presence

import "time"

// Availabilities Teams can show that an application cannot set (Graph
// docs, "presence resource type").
const (
	AvailableIdle   = "AvailableIdle"
	BusyIdle        = "BusyIdle"
	BeRightBack     = "BeRightBack"
	Offline         = "Offline"
	PresenceUnknown = "PresenceUnknown"

	ActivityOffline         = "Offline"
	ActivityPresenceUnknown = "PresenceUnknown"
)

// Shown is what Teams shows for one person, as read back from Graph
// (getPresencesByUserId): the presence aggregated from every session —
// their Teams clients, every application's, their own preferred status —
// and their status message. Whether the message is the worker's is for
// the caller to decide; Graph does not say who wrote it.
type Shown struct {
	Availability string // e.g. Busy, Available, Away, Offline, PresenceUnknown
	Activity     string // e.g. InACall, InAMeeting, Available, Offline
	// StatusMessage is the text of the person's status message; "" when
	// they have none.
	StatusMessage string
	// MessageExpires is when the status message expires; zero when it
	// does not or when Graph did not say. Graph leaves expiryDateTime out
	// when one user reads another's presence, which is always the case
	// for an application, so expect zero.
	MessageExpires time.Time
	// OutOfOffice is outOfOfficeSettings.isOutOfOffice.
	OutOfOffice bool
}

// AvailabilityRank orders availabilities as Graph aggregates sessions
// (Graph docs, "Manage presence state": DoNotDisturb > Busy > Available >
// Away): the higher rank wins; Offline, PresenceUnknown and unknown values
// rank 0. The idle variants rank with their base value.
func AvailabilityRank(availability string) int {
	switch availability {
	case DoNotDisturb:
		return 4
	case Busy, BusyIdle:
		return 3
	case Available, AvailableIdle:
		return 2
	case Away, BeRightBack:
		return 1
	}
	return 0
}
