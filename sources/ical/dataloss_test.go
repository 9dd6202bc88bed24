package ical

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestParseDTRepairs: values whose intent is plain are read as meant; the
// rest stay errors.
func TestParseDTRepairs(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
		kind dtKind
	}{
		{"20131009T170000T", "2013-10-09T17:00:00Z", kindFloating}, // Android exporter
		{"20131009t170000t", "2013-10-09T17:00:00Z", kindFloating},
		{"20131009T1700T", "2013-10-09T17:00:00Z", kindFloating}, // no seconds, stray T
		{"20131009T1700", "2013-10-09T17:00:00Z", kindFloating},  // no seconds
		{"20131009T1700Z", "2013-10-09T17:00:00Z", kindUTC},
		{"20131009T170000Z", "2013-10-09T17:00:00Z", kindUTC},
	} {
		got, err := parseDT(tt.in, false)
		if err != nil || !got.wall.Equal(utc(tt.want)) || got.kind != tt.kind {
			t.Errorf("parseDT(%q) = %v, %d, %v; want %s, %d, nil", tt.in, got.wall, got.kind, err, tt.want, tt.kind)
		}
	}
	for _, in := range []string{"20131009T", "20131009TT", "20131009T170000TT", "20131009T17000T", "20131009T170000X", "20131009T1700000"} {
		if got, err := parseDT(in, false); err == nil {
			t.Errorf("parseDT(%q) = %v, %d, nil; want an error", in, got.wall, got.kind)
		}
	}
}

// TestStrayTEvent: the Android exporter's event is read, not dropped.
func TestStrayTEvent(t *testing.T) {
	res, err := ParseExpand(vcal(ev("UID:android-1", "DTSTART:20131009T170000T", "DTEND:20131009T180000T", "SUMMARY:Standup")),
		ExpandOptions{From: utc("2013-10-01T00:00:00Z"), To: utc("2013-11-01T00:00:00Z"), Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"2013-10-09T17:00Z/2013-10-09T18:00Z"}, brief(res)); diff != "" {
		t.Errorf("Expand(DTSTART:20131009T170000T) mismatch (-want +got):\n%s", diff)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("Expand(DTSTART:20131009T170000T) warnings = %q; want none", res.Warnings)
	}
}

// TestDropped: every piece of calendar data that cannot be used is in
// Result.Dropped (and Warnings), naming the line and the UID; repairs and
// fallbacks are warnings only.
func TestDropped(t *testing.T) {
	opt := ExpandOptions{From: utc("2024-01-01T00:00:00Z"), To: utc("2024-02-01T00:00:00Z"), MaxPerEvent: 3}
	tests := []struct {
		name    string
		event   []string // the VEVENT's properties; UID on line 5
		want    []string // Dropped
		occ     int
		warning string // a warning that is not in Dropped
	}{
		{
			name:  "unreadable DTSTART",
			event: []string{"UID:a", "DTSTART:20240110T10000", "DTEND:20240110T110000Z"},
			want:  []string{`line 6: UID "a": VEVENT skipped: DTSTART: invalid value "20240110T10000"`},
		},
		{
			name:  "no DTSTART",
			event: []string{"UID:a", "SUMMARY:x", "DTEND:20240110T110000Z"},
			want:  []string{`line 4: UID "a": VEVENT skipped: no DTSTART`},
		},
		{
			name:  "unreadable DTEND: no length, no one busy",
			event: []string{"UID:a", "DTSTART:20240110T100000Z", "DTEND:2024-01-10T11:00Z"},
			want:  []string{`line 7: UID "a": DTEND: invalid value "2024-01-10T11:00Z", ignored: the event has no length and makes no one busy`},
			occ:   1,
		},
		{
			name:  "invalid DURATION on a DATE-TIME",
			event: []string{"UID:a", "DTSTART:20240110T100000Z", "DURATION:1H"},
			want:  []string{`line 7: UID "a": invalid DURATION "1H", ignored: the event has no length and makes no one busy`},
			occ:   1,
		},
		{
			name:    "unreadable DTEND on a DATE keeps the day",
			event:   []string{"UID:a", "DTSTART;VALUE=DATE:20240110", "DTEND;VALUE=DATE:2024011"},
			occ:     1,
			warning: `line 7: UID "a": DTEND: invalid value "2024011", ignored`,
		},
		{
			name:  "invalid RRULE",
			event: []string{"UID:a", "DTSTART:20240110T100000Z", "DURATION:PT1H", "RRULE:COUNT=3"},
			want:  []string{`line 8: UID "a": RRULE "COUNT=3" ignored: no valid FREQ`},
			occ:   1,
		},
		{
			name:  "invalid RDATE",
			event: []string{"UID:a", "DTSTART:20240110T100000Z", "DURATION:PT1H", "RDATE:20240111T1000000Z"},
			want:  []string{`line 8: UID "a": RDATE: invalid value "20240111T1000000Z", ignored`},
			occ:   1,
		},
		{
			name:  "over MaxPerEvent",
			event: []string{"UID:a", "DTSTART:20240110T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY"},
			want:  []string{`line 6: UID "a": more than 3 occurrences in the window; the rest are dropped`},
			occ:   3,
		},
		{
			name:    "unknown TZID is a fallback, not a loss",
			event:   []string{"UID:a", "DTSTART;TZID=Nowhere/Town:20240110T100000", "DURATION:PT1H"},
			occ:     1,
			warning: `line 6: UID "a": unknown TZID "Nowhere/Town", using UTC`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := ParseExpand(vcal(ev(tt.event...)), opt)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, res.Dropped); diff != "" {
				t.Errorf("Expand(%q) Dropped mismatch (-want +got):\n%s", tt.event, diff)
			}
			for _, d := range res.Dropped {
				if !slices.Contains(res.Warnings, d) {
					t.Errorf("Expand(%q): dropped %q is not among the warnings %q", tt.event, d, res.Warnings)
				}
			}
			if tt.warning != "" && !slices.Contains(res.Warnings, tt.warning) {
				t.Errorf("Expand(%q) warnings = %q; want %q", tt.event, res.Warnings, tt.warning)
			}
			if len(res.Occurrences) != tt.occ {
				t.Errorf("Expand(%q) = %v; want %d occurrences", tt.event, brief(res), tt.occ)
			}
		})
	}
}

// TestDroppedOverride: an override that cannot be read is a loss too.
func TestDroppedOverride(t *testing.T) {
	res, err := ParseExpand(vcal(
		ev("UID:s", "DTSTART:20240110T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=2"),
		ev("UID:s", "RECURRENCE-ID:2024011T100000Z", "DTSTART:20240111T120000Z", "DURATION:PT1H")),
		ExpandOptions{From: utc("2024-01-01T00:00:00Z"), To: utc("2024-02-01T00:00:00Z")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`line 12: UID "s": override skipped: RECURRENCE-ID: invalid value "2024011T100000Z"`}
	if diff := cmp.Diff(want, res.Dropped); diff != "" {
		t.Errorf("Expand(bad RECURRENCE-ID) Dropped mismatch (-want +got):\n%s", diff)
	}
}

// TestDuplicateUID: several VEVENTs with one UID and no RECURRENCE-ID. A
// higher SEQUENCE supersedes; with equal SEQUENCE, different DTSTARTs are
// distinct meetings (a broken exporter) and all count, with a warning;
// copies with the same DTSTART are one.
func TestDuplicateUID(t *testing.T) {
	tests := []struct {
		name      string
		parts     []string
		want      []string
		summaries []string
		warn      string
		dropped   []string
	}{
		{
			name: "higher SEQUENCE supersedes",
			parts: []string{ev("UID:u", "SEQUENCE:2", "DTSTART:20240110T120000Z", "DURATION:PT1H", "SUMMARY:new"),
				ev("UID:u", "SEQUENCE:1", "DTSTART:20240110T100000Z", "DURATION:PT1H", "SUMMARY:old")},
			want:      []string{"2024-01-10T12:00Z/2024-01-10T13:00Z"},
			summaries: []string{"new"},
			warn:      `line 7: UID "u": 2 VEVENTs with this UID and no RECURRENCE-ID: SEQUENCE 2 supersedes 1 older`,
		},
		{
			name: "equal SEQUENCE, different DTSTART: all count",
			parts: []string{ev("UID:u", "DTSTART:20240110T100000Z", "DURATION:PT1H", "SUMMARY:a"),
				ev("UID:u", "DTSTART:20240111T100000Z", "DURATION:PT1H", "SUMMARY:b"),
				ev("UID:u", "DTSTART;TZID=Europe/Berlin:20240112T100000", "DURATION:PT1H", "SUMMARY:c")},
			want:      []string{"2024-01-10T10:00Z/2024-01-10T11:00Z", "2024-01-11T10:00Z/2024-01-11T11:00Z", "2024-01-12T09:00Z/2024-01-12T10:00Z"},
			summaries: []string{"a", "b", "c"},
			warn:      `line 6: UID "u": 3 VEVENTs with this UID and SEQUENCE 0 but different DTSTARTs: each counts as a meeting of its own`,
		},
		{
			name: "equal everything: one",
			parts: []string{ev("UID:u", "SEQUENCE:1", "DTSTART:20240110T100000Z", "DURATION:PT1H", "SUMMARY:x"),
				ev("UID:u", "SEQUENCE:1", "DTSTART:20240110T100000Z", "DURATION:PT1H", "SUMMARY:x")},
			want:      []string{"2024-01-10T10:00Z/2024-01-10T11:00Z"},
			summaries: []string{"x"},
			warn:      `line 14: UID "u": 2 VEVENTs with this UID, SEQUENCE 1 and the same DTSTART: the last in the file counts`,
		},
		{
			name: "equal SEQUENCE and DTSTART: the last in the file counts",
			parts: []string{ev("UID:u", "DTSTART:20240110T100000Z", "DURATION:PT1H", "SUMMARY:first"),
				ev("UID:u", "DTSTART:20240110T100000Z", "DURATION:PT2H", "SUMMARY:last")},
			want:      []string{"2024-01-10T10:00Z/2024-01-10T12:00Z"},
			summaries: []string{"last"},
			warn:      "the same DTSTART: the last in the file counts",
		},
		{
			name: "the older copies go, the newest distinct ones stay",
			parts: []string{ev("UID:u", "SEQUENCE:0", "DTSTART:20240110T090000Z", "DURATION:PT1H", "SUMMARY:stale"),
				ev("UID:u", "SEQUENCE:1", "DTSTART:20240110T100000Z", "DURATION:PT1H", "SUMMARY:a"),
				ev("UID:u", "SEQUENCE:1", "DTSTART:20240110T140000Z", "DURATION:PT1H", "SUMMARY:b")},
			want:      []string{"2024-01-10T10:00Z/2024-01-10T11:00Z", "2024-01-10T14:00Z/2024-01-10T15:00Z"},
			summaries: []string{"a", "b"},
			warn:      "2 VEVENTs with this UID and SEQUENCE 1 but different DTSTARTs",
		},
		{
			name: "a copy without DTSTART does not hide the others",
			parts: []string{ev("UID:u", "DTSTART:20240110T100000Z", "DURATION:PT1H", "SUMMARY:a"),
				ev("UID:u", "SUMMARY:broken")},
			want:      []string{"2024-01-10T10:00Z/2024-01-10T11:00Z"},
			summaries: []string{"a"},
			dropped:   []string{`line 10: UID "u": VEVENT skipped: no DTSTART`},
		},
		{
			name: "recurring series with one UID share their overrides",
			parts: []string{ev("UID:u", "DTSTART:20240110T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=2", "SUMMARY:a"),
				ev("UID:u", "DTSTART:20240110T150000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=2", "SUMMARY:b"),
				ev("UID:u", "RECURRENCE-ID:20240111T150000Z", "DTSTART:20240111T160000Z", "DURATION:PT1H", "SUMMARY:b moved")},
			want: []string{"2024-01-10T10:00Z/2024-01-10T11:00Z", "2024-01-10T15:00Z/2024-01-10T16:00Z",
				"2024-01-11T10:00Z/2024-01-11T11:00Z", "2024-01-11T16:00Z/2024-01-11T17:00Z"},
			summaries: []string{"a", "b", "a", "b moved"},
			warn:      "2 VEVENTs with this UID and SEQUENCE 0 but different DTSTARTs",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := ParseExpand(vcal(tt.parts...), ExpandOptions{From: utc("2024-01-01T00:00:00Z"), To: utc("2024-02-01T00:00:00Z")})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, brief(res)); diff != "" {
				t.Errorf("Expand mismatch (-want +got):\n%s\nwarnings: %q", diff, res.Warnings)
			}
			var summaries []string
			for _, o := range res.Occurrences {
				summaries = append(summaries, o.Summary)
			}
			if diff := cmp.Diff(tt.summaries, summaries); diff != "" {
				t.Errorf("Expand summaries mismatch (-want +got):\n%s", diff)
			}
			if tt.warn != "" && !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, tt.warn) }) {
				t.Errorf("Expand warnings = %q; want one containing %q", res.Warnings, tt.warn)
			}
			if diff := cmp.Diff(tt.dropped, res.Dropped); diff != "" {
				t.Errorf("Expand Dropped mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDuplicateUIDExporter: a feed whose exporter gives every meeting the
// same UID (no SEQUENCE, no RECURRENCE-ID) keeps every meeting.
func TestDuplicateUIDExporter(t *testing.T) {
	var parts []string
	start := utc("2024-01-01T09:00:00Z")
	for i := range 50 {
		at := start.Add(time.Duration(i) * 6 * time.Hour)
		parts = append(parts, ev("UID:same-for-all", "DTSTART:"+at.Format("20060102T150405Z"), "DURATION:PT30M", "RRULE:FREQ=WEEKLY;COUNT=4"))
	}
	res, err := ParseExpand(vcal(parts...), ExpandOptions{From: utc("2024-01-01T00:00:00Z"), To: utc("2024-03-01T00:00:00Z")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res.Occurrences), 50*4; got != want {
		t.Errorf("Expand(50 weekly series, one UID) = %d occurrences; want %d", got, want)
	}
	if len(res.Dropped) != 0 {
		t.Errorf("Expand(50 weekly series, one UID) dropped %q; want nothing", res.Dropped)
	}
}

// TestDeletedSeriesTakesItsOverrides: a series whose every RRULE ends
// before DTSTART (how clients write a deleted series) has no instances, and
// its overrides go with it, as before several series could share a UID.
func TestDeletedSeriesTakesItsOverrides(t *testing.T) {
	res, err := ParseExpand(vcal(
		ev("UID:d", "DTSTART:20240110T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY;UNTIL=20240101T000000Z"),
		ev("UID:d", "RECURRENCE-ID:20240111T100000Z", "DTSTART:20240111T120000Z", "DURATION:PT1H")),
		ExpandOptions{From: utc("2024-01-01T00:00:00Z"), To: utc("2024-02-01T00:00:00Z")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Occurrences) != 0 || len(res.Dropped) != 0 {
		t.Errorf("Expand(deleted series with an override) = %v, dropped %q; want nothing", brief(res), res.Dropped)
	}
}
