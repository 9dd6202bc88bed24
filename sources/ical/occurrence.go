package ical

import "time"

// Occurrence is one concrete instance of a VEVENT, after recurrence
// expansion and overrides, in a compact form that outlives the parsed tree.
type Occurrence struct {
	UID string
	// RecurrenceID is the instance's original start (UTC) for an instance of
	// a recurring event; zero for a non-recurring event.
	RecurrenceID time.Time
	Summary      string
	Location     string
	Description  string
	Start, End   time.Time // UTC; End == Start for a zero-length event
	AllDay       bool
	// Status is the effective STATUS, upper-case: the override's own, else
	// the master's; "CANCELLED" also when the calendar's METHOD is CANCEL.
	Status string
	// Transparent is TRANSP:TRANSPARENT or X-MICROSOFT-CDO-BUSYSTATUS:FREE.
	Transparent bool
	Organizer   string // lower-cased address, mailto: stripped
	Attendees   []Attendee
	// MeetingKeys are the Zoom and Webex meetings the event's join links
	// name ("zoom:83412345678", "webex:25501234567"; see MeetingKeys),
	// read before the description is dropped: live meeting signals find
	// their occurrences by them.
	MeetingKeys []string
}

// Attendee is one ATTENDEE of an occurrence.
type Attendee struct {
	Email    string // lower-cased address, mailto: stripped
	PartStat string // upper-case PARTSTAT; "" when absent
}

// Cancelled reports whether the occurrence is cancelled.
func (o *Occurrence) Cancelled() bool { return o.Status == "CANCELLED" }

// Key identifies an occurrence within a feed across polls. It is unique
// except in a feed that gives several meetings one UID (kept as distinct
// events, see Calendar.Expand): their single occurrences share a Key.
type Key struct {
	UID          string
	RecurrenceID time.Time
}

// Key returns the identity of the occurrence.
func (o *Occurrence) Key() Key { return Key{o.UID, o.RecurrenceID} }
