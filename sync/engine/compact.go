package engine

import "github.com/calpresence/calpresence/sources/ical"

// compact returns occs as they are best kept for hours: in a slice of
// their own length, with every string copied out of the parser's buffers
// (a substring of a folded line otherwise pins the whole line, and an
// attendee's address a 150-byte ATTENDEE line) and shared between the
// occurrences of one event, and without descriptions unless keepDescription.
// For 10,000 feeds this is the difference between about 50 KB and a few KB
// per feed (see BENCHMARKS.md).
func compact(occs []ical.Occurrence, keepDescription bool) []ical.Occurrence {
	if len(occs) == 0 {
		return nil
	}
	out := make([]ical.Occurrence, len(occs))
	strs := make(map[string]string)
	str := func(s string) string {
		if s == "" {
			return ""
		}
		if c, ok := strs[s]; ok {
			return c
		}
		c := string([]byte(s)) // a copy that owns its bytes
		strs[c] = c
		return c
	}
	type sliceKey struct {
		first *ical.Attendee
		n     int
	}
	atts := make(map[sliceKey][]ical.Attendee)
	keys := make(map[*string][]string)
	for i, o := range occs {
		o.UID, o.Summary, o.Location = str(o.UID), str(o.Summary), str(o.Location)
		o.Status, o.Organizer = str(o.Status), str(o.Organizer)
		if keepDescription {
			o.Description = str(o.Description)
		} else {
			o.Description = ""
		}
		if len(o.Attendees) > 0 {
			// The occurrences of an event share its attendee slice.
			k := sliceKey{&o.Attendees[0], len(o.Attendees)}
			a, ok := atts[k]
			if !ok {
				a = make([]ical.Attendee, len(o.Attendees))
				for j, x := range o.Attendees {
					a[j] = ical.Attendee{Email: str(x.Email), PartStat: str(x.PartStat)}
				}
				atts[k] = a
			}
			o.Attendees = a
		}
		if len(o.MeetingKeys) > 0 {
			// Shared like the attendees: one slice per event.
			k := &o.MeetingKeys[0]
			mk, ok := keys[k]
			if !ok {
				mk = make([]string, len(o.MeetingKeys))
				for j, x := range o.MeetingKeys {
					mk[j] = str(x)
				}
				keys[k] = mk
			}
			o.MeetingKeys = mk
		}
		out[i] = o
	}
	return out
}
