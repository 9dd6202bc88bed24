package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"time"

	"github.com/calpresence/calpresence/sources/ical"
)

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

// occDigest identifies a feed's occurrences as sameOccurrence compares
// them: equal digests, equal occurrences. A feed keeps the digest of its
// occurrences instead of the occurrences themselves (the matches keep
// what they need of them, plan.Occurrence), so that a new expansion is known
// to change nothing without the old one at hand.
type occDigest [sha256.Size]byte

// digestOccurrences returns the digest of occs: every field sameOccurrence
// compares, in order, each string and list with its length, each time as
// its instant (time.Time.Equal's sense of equal).
func digestOccurrences(occs []ical.Occurrence) occDigest {
	h := sha256.New()
	var b []byte
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	tm := func(t time.Time) {
		b = binary.AppendVarint(b, t.Unix())
		b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	}
	flag := func(v bool) {
		if v {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(occs)))
	for i := range occs {
		o := &occs[i]
		str(o.UID)
		tm(o.RecurrenceID)
		tm(o.Start)
		tm(o.End)
		str(o.Status)
		flag(o.Transparent)
		flag(o.AllDay)
		str(o.Summary)
		str(o.Location)
		str(o.Description)
		str(o.Organizer)
		b = binary.AppendUvarint(b, uint64(len(o.Attendees)))
		for _, a := range o.Attendees {
			str(a.Email)
			str(a.PartStat)
		}
		b = binary.AppendUvarint(b, uint64(len(o.MeetingKeys)))
		for _, k := range o.MeetingKeys {
			str(k)
		}
		h.Write(b)
		b = b[:0]
	}
	var d occDigest
	h.Sum(d[:0])
	return d
}

// sameOccurrence reports whether a and b are the same occurrence, field
// by field: what digestOccurrences tells apart.
func sameOccurrence(a, b ical.Occurrence) bool {
	return a.UID == b.UID && a.RecurrenceID.Equal(b.RecurrenceID) && a.Start.Equal(b.Start) && a.End.Equal(b.End) &&
		a.Status == b.Status && a.Transparent == b.Transparent && a.AllDay == b.AllDay &&
		a.Summary == b.Summary && a.Location == b.Location && a.Description == b.Description &&
		a.Organizer == b.Organizer && slices.Equal(a.Attendees, b.Attendees) && slices.Equal(a.MeetingKeys, b.MeetingKeys)
}
