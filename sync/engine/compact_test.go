package engine

import (
	"testing"
	"time"

	"github.com/calpresence/calpresence/sources/ical"
	"github.com/calpresence/calpresence/sync/plan"
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

func TestKeepMatched(t *testing.T) {
	occs := []ical.Occurrence{
		{UID: "a", Summary: "A", Location: "Room", Description: "dial-in", Organizer: "bob@example.com", Status: "CONFIRMED",
			Start: time.Unix(0, 0), End: time.Unix(1800, 0), Attendees: []ical.Attendee{{Email: "carol@example.com"}},
			MeetingKeys: []string{"zoom:1"}},
		{UID: "unmatched", Start: time.Unix(0, 0), End: time.Unix(1800, 0)},
		{UID: "c", RecurrenceID: time.Unix(3600, 0), Transparent: true, AllDay: true, Start: time.Unix(3600, 0), End: time.Unix(5400, 0)},
	}
	matches := []plan.Match{{User: "bob", Occ: &occs[0]}, {User: "carol", Occ: &occs[0]}, {User: "bob", Occ: &occs[2]}}
	keepMatched(matches)
	if matches[0].Occ != matches[1].Occ || matches[0].Occ == &occs[0] || matches[2].Occ == &occs[2] {
		t.Fatalf("keepMatched: the matches of one occurrence do not share a copy, or point at the original")
	}
	for i, want := range []ical.Occurrence{
		{UID: "a", Summary: "A", Status: "CONFIRMED", Start: time.Unix(0, 0), End: time.Unix(1800, 0), MeetingKeys: []string{"zoom:1"}},
		{UID: "a", Summary: "A", Status: "CONFIRMED", Start: time.Unix(0, 0), End: time.Unix(1800, 0), MeetingKeys: []string{"zoom:1"}},
		{UID: "c", RecurrenceID: time.Unix(3600, 0), Transparent: true, AllDay: true, Start: time.Unix(3600, 0), End: time.Unix(5400, 0)},
	} {
		if !sameOccurrence(*matches[i].Occ, want) {
			t.Errorf("keepMatched: match %d holds %+v; want %+v", i, *matches[i].Occ, want)
		}
	}
	keepMatched(nil) // no matches: nothing to keep
}
