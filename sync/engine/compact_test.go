package engine

import (
	"testing"
	"time"

	"github.com/calpresence/calpresence/sources/ical"
)

func TestDigestOccurrences(t *testing.T) {
	base := ical.Occurrence{UID: "u1", RecurrenceID: time.Unix(3600, 0).UTC(), Summary: "Sync", Location: "Room",
		Description: "dial-in", Start: time.Unix(3600, 0).UTC(), End: time.Unix(5400, 0).UTC(), Status: "CONFIRMED",
		Organizer: "bob@example.com", Attendees: []ical.Attendee{{Email: "carol@example.com", PartStat: "ACCEPTED"}},
		MeetingKeys: []string{"zoom:83412345678"}}
	// Each change is one sameOccurrence tells apart; the digest must too.
	changes := map[string]func(o *ical.Occurrence){
		"uid":          func(o *ical.Occurrence) { o.UID = "u2" },
		"recurrenceid": func(o *ical.Occurrence) { o.RecurrenceID = time.Time{} },
		"summary":      func(o *ical.Occurrence) { o.Summary = "Sync!" },
		"location":     func(o *ical.Occurrence) { o.Location = "" },
		"description":  func(o *ical.Occurrence) { o.Description = "dial in" },
		"start":        func(o *ical.Occurrence) { o.Start = o.Start.Add(time.Nanosecond) },
		"end":          func(o *ical.Occurrence) { o.End = o.End.Add(time.Minute) },
		"allday":       func(o *ical.Occurrence) { o.AllDay = true },
		"status":       func(o *ical.Occurrence) { o.Status = "CANCELLED" },
		"transparent":  func(o *ical.Occurrence) { o.Transparent = true },
		"organizer":    func(o *ical.Occurrence) { o.Organizer = "" },
		"partstat": func(o *ical.Occurrence) {
			o.Attendees = []ical.Attendee{{Email: "carol@example.com", PartStat: "DECLINED"}}
		},
		"attendees": func(o *ical.Occurrence) { o.Attendees = append(o.Attendees, ical.Attendee{Email: "dave@example.com"}) },
		"keys":      func(o *ical.Occurrence) { o.MeetingKeys = nil },
		// Strings run into each other unless their lengths are part of it.
		"boundary": func(o *ical.Occurrence) { o.Summary, o.Location = "SyncR", "oom" },
	}
	want := digestOccurrences([]ical.Occurrence{base})
	for name, change := range changes {
		o := base
		change(&o)
		if sameOccurrence(o, base) {
			t.Fatalf("%s: sameOccurrence says nothing changed", name)
		}
		if got := digestOccurrences([]ical.Occurrence{o}); got == want {
			t.Errorf("digestOccurrences with %s changed = %x; want another than %x", name, got, want)
		}
	}
	// The same instant in another zone is the same occurrence.
	same := base
	same.Start = base.Start.In(time.FixedZone("x", 3600))
	same.Attendees = []ical.Attendee{{Email: "carol@example.com", PartStat: "ACCEPTED"}}
	if got := digestOccurrences([]ical.Occurrence{same}); got != want {
		t.Errorf("digestOccurrences of an equal occurrence = %x; want %x", got, want)
	}
	if digestOccurrences(nil) == want || digestOccurrences([]ical.Occurrence{base, base}) == want {
		t.Error("digestOccurrences does not count the occurrences")
	}
}
