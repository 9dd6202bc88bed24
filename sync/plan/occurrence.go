package plan

import (
	"time"

	"github.com/calpresence/calpresence/sources/ical"
)

// Occurrence is what a match keeps of its occurrence: what is read once
// matching is done, by the spans, Reconcile, live signals, the status
// view and plan's output. The attendees, organizer, location, description
// and the status and flags behind the skip reasons serve the matching
// alone (the Matcher reads them from the ical.Occurrence, and Match.Skip
// holds what they decided). The matches are kept for hours, at 100,000
// feeds millions of occurrences: an ical.Occurrence is 232 bytes however
// little of it is set, an Occurrence 128.
type Occurrence struct {
	UID     string
	Summary string
	// RecurrenceID is the instance's original start (UTC) for an instance
	// of a recurring event; zero for a non-recurring event.
	RecurrenceID time.Time
	Start, End   time.Time // UTC; End == Start for a zero-length event
	// MeetingKeys are the Zoom and Webex meetings the event's join links
	// name (ical.Occurrence.MeetingKeys): live meeting signals find their
	// occurrences by them.
	MeetingKeys []string
}

// keep returns what a match keeps of o. Its strings and meeting keys are
// o's own, not copies: the engine, which keeps matches for hours, matches
// occurrences whose strings own their bytes (compacted, or decoded from
// the store), so nothing of a parser's buffers is pinned.
func keep(o *ical.Occurrence) Occurrence {
	return Occurrence{UID: o.UID, Summary: o.Summary, RecurrenceID: o.RecurrenceID,
		Start: o.Start, End: o.End, MeetingKeys: o.MeetingKeys}
}
