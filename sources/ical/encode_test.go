package ical

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestOccurrencesRoundTrip stores and reads back the occurrences of every
// file of testdata (the corpus included) in 60-day windows from its own dates:
// what comes back is what went in, to the nanosecond and the zone, and an
// event's occurrences share one attendee list again.
func TestOccurrencesRoundTrip(t *testing.T) {
	files, occs := 0, 0
	for _, f := range calendarFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ownDates(data, 4) {
			res, err := ParseExpand(data, ExpandOptions{From: d.Add(-time.Hour), To: d.Add(60 * 24 * time.Hour)})
			if err != nil {
				continue // the corpus tests cover files refused
			}
			b := AppendOccurrences(nil, res.Occurrences)
			got, err := DecodeOccurrences(b)
			if err != nil {
				t.Fatalf("%s: DecodeOccurrences(AppendOccurrences(%d occurrences)): %v", f, len(res.Occurrences), err)
			}
			if diff := cmp.Diff(res.Occurrences, got); diff != "" {
				t.Fatalf("%s: round trip of %d occurrences (-stored +read):\n%s", f, len(res.Occurrences), diff)
			}
			occs += len(got)
		}
		files++
	}
	if files < corpusSize || occs < 1000 {
		t.Fatalf("round-tripped %d occurrences of %d files; want the corpus's %d files and 1,000 occurrences at least", occs, files, corpusSize)
	}
	t.Logf("%d occurrences of %d files round-tripped", occs, files)
}

func TestOccurrencesShared(t *testing.T) {
	atts := []Attendee{{Email: "alice@contoso.com", PartStat: "ACCEPTED"}, {Email: "bob@contoso.com"}}
	keys := []string{"zoom:83412345678"}
	in := []Occurrence{
		{UID: "a", Start: time.Unix(1_800_000_000, 0).UTC(), End: time.Unix(1_800_003_600, 0).UTC(), Attendees: atts, MeetingKeys: keys,
			RecurrenceID: time.Unix(1_800_000_000, 0).UTC()},
		{UID: "a", Start: time.Unix(1_800_086_400, 5).UTC(), End: time.Unix(1_800_090_000, 0).UTC(), Attendees: atts, MeetingKeys: keys,
			RecurrenceID: time.Unix(1_800_086_400, 0).UTC(), AllDay: true, Transparent: true, Status: "CANCELLED"},
		{UID: "old", Summary: "before 1970", Start: time.Unix(-86_400, 0).UTC(), End: time.Unix(-3_600, 0).UTC()},
	}
	out, err := DecodeOccurrences(AppendOccurrences(nil, in))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Fatalf("round trip (-stored +read):\n%s", diff)
	}
	if &out[0].Attendees[0] != &out[1].Attendees[0] || &out[0].MeetingKeys[0] != &out[1].MeetingKeys[0] {
		t.Error("the occurrences of one event read back with lists of their own; want them shared")
	}
	if got, err := DecodeOccurrences(AppendOccurrences(nil, nil)); err != nil || got != nil {
		t.Errorf("DecodeOccurrences(none) = %v, %v; want nil, nil", got, err)
	}
}

// TestOccurrencesCorrupt reads every truncation and every one-byte change
// of a stored form: an error wrapping errOccurrences or occurrences, never
// a panic.
func TestOccurrencesCorrupt(t *testing.T) {
	atts := []Attendee{{Email: "alice@contoso.com", PartStat: "ACCEPTED"}}
	b := AppendOccurrences(nil, []Occurrence{
		{UID: "a", Summary: "Standup", Start: time.Unix(1_800_000_000, 0).UTC(), End: time.Unix(1_800_003_600, 0).UTC(), Attendees: atts, MeetingKeys: []string{"webex:1"}},
		{UID: "b", Start: time.Unix(1_800_000_000, 0).UTC(), End: time.Unix(1_800_003_600, 0).UTC(), RecurrenceID: time.Unix(1, 0).UTC()},
	})
	for n := range len(b) {
		if _, err := DecodeOccurrences(b[:n]); !errors.Is(err, errOccurrences) {
			t.Fatalf("DecodeOccurrences(first %d of %d bytes) = %v; want an error wrapping errOccurrences", n, len(b), err)
		}
	}
	if _, err := DecodeOccurrences(append(b[:len(b):len(b)], 0)); !errors.Is(err, errOccurrences) {
		t.Fatalf("DecodeOccurrences(a byte too many) = %v; want an error", err)
	}
	for i := range b {
		for _, v := range []byte{0, 1, 0x7f, 0x80, 0xff} {
			c := append([]byte(nil), b...)
			c[i] = v
			if _, err := DecodeOccurrences(c); err != nil && !errors.Is(err, errOccurrences) {
				t.Fatalf("DecodeOccurrences(byte %d = %#x) = %v; want nil or an error wrapping errOccurrences", i, v, err)
			}
		}
	}
}

func FuzzDecodeOccurrences(f *testing.F) {
	f.Add(AppendOccurrences(nil, []Occurrence{{UID: "a", Start: time.Unix(1, 0).UTC(), End: time.Unix(2, 0).UTC()}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		occs, err := DecodeOccurrences(b)
		if err != nil {
			return
		}
		// What reads is stored again as the same bytes' meaning.
		again, err := DecodeOccurrences(AppendOccurrences(nil, occs))
		if err != nil {
			t.Fatalf("stored again: %v", err)
		}
		if diff := cmp.Diff(occs, again); diff != "" {
			t.Fatalf("stored again (-first +second):\n%s", diff)
		}
	})
}
